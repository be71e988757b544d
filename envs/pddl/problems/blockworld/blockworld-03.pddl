(define (problem blockworld-03)
(:domain blocksworld-4ops)
(:objects b1 b2 b3 b4)
(:init
  (arm-empty)
  (on-table b4)
  (on b3 b4)
  (on b2 b3)
  (on b1 b2)
  (clear b1))
(:goal (and
  (on b4 b3))))
