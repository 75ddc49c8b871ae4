"""The precisions VGG-19's convs can run in, and what says a machine has bfloat16 units: facts
without TensorFlow, so that `python -m nst_utils run` checks `-p conv_precision` before anything
loads it. nst_course/convs.py makes the choice.

bfloat16 keeps float32's 8 exponent bits and 7 of its 23 fraction bits: about 2-3 significant
digits. CPUs with AVX512-BF16 or AMX-BF16 (which oneDNN, in TensorFlow's wheel, uses) multiply it
several times faster than float32; elsewhere it is emulated, no faster than float32
(benchmarks/RESULTS.md), so conv_plan runs float32 there unless FORCE_BFLOAT16 is set.
"""
CONV_PRECISIONS = ("float32", "bfloat16")
BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # in /proc/cpuinfo's flags
FORCE_BFLOAT16 = "NST_FORCE_BFLOAT16"  # =1: bfloat16 even where emulated (tests, benchmarks)
