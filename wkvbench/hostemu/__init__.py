"""Host emulation of the CUDA C kernels: the same ``.cu`` sources compiled with g++ after a CUDA shim
(``cuda_shim.h``) and run on the CPU, one std::thread per CUDA thread.

``build``: the g++ builds (plain, ThreadSanitizer, counting; cached); ``launch``: the drivers' entry
points and launchers the kernel modules accept; ``count``: global-memory bytes counted per call
(``wkvbench count``). The kernel tests and their race checks use the same builds.
"""
