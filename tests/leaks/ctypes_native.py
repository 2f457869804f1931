# leak: C memory allocated through ctypes and never freed (a binding that forgets free())
# guard: --memory 200M
# expect: is outside Python objects: native memory
import ctypes
import ctypes.util

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]


def decode_frame(size):
    buf = libc.malloc(size)
    ctypes.memset(buf, 7, size)
    return buf  # the caller never frees it


frames = 0
while True:
    decode_frame(256 * 1024)
    frames += 1
