"""The course's own tools, which nst_utils (the student's module) uses; nothing here is needed
to do the assignment.

- tf1: TensorFlow's quiet import, its 1.x API in graph mode and TF 1.x's seed rule (`tf`).
- vgg19_file: MatConvNet's VGG-19 file: its layout, ImageNet means, reader and structure check.
- convs: the convs of load_vgg_model: direct, by Winograd's algorithm, or in bfloat16.
- precisions: the precisions the convs can run in (no TensorFlow: the runner checks them).
- weights: the weights' download (resumable, on first use too) and their MD5 check.
- runner: `python -m nst_utils run`, the headless run of the notebook with papermill.
- cli: `python -m nst_utils run | download | verify`.
"""
