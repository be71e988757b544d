(define (problem blockworld-demo)
(:domain blocksworld-4ops)
(:objects b1 b2 b3)
(:init
  (arm-empty)
  (on-table b3)
  (on b1 b3)
  (on b2 b1)
  (clear b2))
(:goal (and
  (on b2 b3))))
