"""Runs and their executors: one episode (:mod:`.episode`), an evaluation of many (:mod:`.evaluation`, planned by
:mod:`.planning`), the executors that run episodes in threads, worker processes or on Ray (:mod:`.executor`,
:mod:`.process_executor`, :mod:`.ray_executor`, each worker holding an :mod:`.episode_runner`), and the learning
runs (:mod:`.learning` for Reflexion, :mod:`.learnact_run` for LearnAct, with its :mod:`.usage` demonstration).
No printing: the commands show what a run returns."""
