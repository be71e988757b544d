(define (problem blockworld-04)
(:domain blocksworld-4ops)
(:objects b1 b2 b3 b4)
(:init
  (arm-empty)
  (on-table b3)
  (on b2 b3)
  (on b4 b2)
  (clear b4)
  (on-table b1)
  (clear b1))
(:goal (and
  (on b3 b2)
  (on b4 b3))))
