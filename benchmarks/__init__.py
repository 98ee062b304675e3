"""Measurements of ColorRL's quality and speed; not part of the installed package.

Run each from the repository root as ``python -m benchmarks.NAME`` (``--help`` for its options,
``--data DIR`` for the data set it runs on). Each prints its result as a Markdown block: machine,
command, date, tables.

Quality
    learn         train a recipe for a time budget, score the best checkpoint on val/, plot the
                  learning curve
    levers        several variants of a recipe, the same budget each, scored against the first
    compare       ColorRL against U-Net + CC, U-Net + watershed, Cellpose 3 and the perfect
                  foreground, same budget, same metrics
    diagnose      where a trained model loses: foreground, merged/missed/split objects, reward
                  against an oracle coloring
    fast_layout   whether the fast inference layout changes what a trained model segments
    export_model  the bundled model from a training checkpoint (float16 weights), both scored
    plot_curve    the learning curve of a training log

Speed
    speed         inference per image and training throughput of the current code
    scaling       inference time against image size and against T, with plots
    profile_ops   torch.profiler's top operators of one inference and one training update
    precision     training updates in float32 against bfloat16
    distributed   training throughput for 1..P processes (torchrun) and 1..N environments
    peer_speed    inference time of ColorRL against Cellpose 3 on the same images
    peer_cellpose Cellpose 3 trained from scratch in its own venv (the peer of compare)

Helpers: ``recipes`` (the base recipes and the experiments, ``load_recipe``), ``baselines`` (the
U-Net baselines of compare), ``_report`` (machine, command, run options), ``_timing`` (what the
speed benchmarks share), ``_cellpose_worker`` (runs inside the Cellpose venv).
"""
