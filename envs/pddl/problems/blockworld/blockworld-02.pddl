(define (problem blockworld-02)
(:domain blocksworld-4ops)
(:objects b1 b2 b3)
(:init
  (arm-empty)
  (on-table b3)
  (clear b3)
  (on-table b1)
  (clear b1)
  (on-table b2)
  (clear b2))
(:goal (and
  (on b1 b3)
  (on b2 b1))))
