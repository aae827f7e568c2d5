"""The inline PTX the triton kernels run on a GPU, as text: importable without triton.

PTX is NVIDIA's assembly language. `tl.inline_asm_elementwise` pastes one of these strings into a
kernel; `$0 … $k` are its operands, outputs first. Each string does with a few bit operations what
triton would make of the plain code with many more. Under the interpreter (no GPU) the kernels run
a plain-triton twin of each instead, and the tests run the strings themselves through a small PTX
interpreter (`tests/test_kernels.py::_run_ptx`), so both are checked without a GPU.

The trick behind all of them: a 16-bit float whose exponent bits say 1024 (fp16 `0x6400`) has a
spacing of exactly 1 between neighbours, so or-ing a 4-bit code q into its low bits makes the
number 1024 + q, with no conversion instruction. For bf16 the same holds at 128 (`0x4300`).
"""

FP16_MAGIC, BF16_MAGIC = 0x6400, 0x4300          # the bits of fp16 1024 and of bf16 128


def nibbles(magic: int) -> str:
    """The tile kernel's codes (`tile.magic_codes`): 4 bytes in $4 -> the 16-bit numbers
    magic | q of their low nibbles in $0 (bytes 0, 1) and $1 (bytes 2, 3), of their high nibbles in
    $2 and $3. A PRMT spreads two bytes into the two 16-bit halves of a register, a LOP3 masks a
    nibble out of each half and or-s in the magic bits at once; a shift by 4 brings the high
    nibbles down. 8 instructions for 8 codes (4 bytes)."""
    two = f"0x{magic:04X}{magic:04X}"
    return ("{ .reg .b32 t, u; prmt.b32 t, $4, 0, 0x4140; prmt.b32 u, $4, 0, 0x4342;"   # (b0, b1), (b2, b3)
            f" lop3.b32 $0, t, 0x000F000F, {two}, 0xea; lop3.b32 $1, u, 0x000F000F, {two}, 0xea;"
            f" shr.u32 t, t, 4; shr.u32 u, u, 4;"
            f" lop3.b32 $2, t, 0x000F000F, {two}, 0xea; lop3.b32 $3, u, 0x000F000F, {two}, 0xea; }}")


NIBBLES_FP16, NIBBLES_BF16 = nibbles(FP16_MAGIC), nibbles(BF16_MAGIC)

# Two codes per instruction (`half2.packed_gemv_half2`). The PTX works on int32 registers that hold
# two fp16 numbers (f16x2). A word's codes sit at bits 4k (k = 0 … 7); a LOP3 with the mask
# 0x000F000F picks codes 0 and 4 at once and or-s in the bits of fp16 1024, so that each half *is*
# the fp16 number 1024 + q; the mask 0x00F000F0 picks codes 1 and 5 as 1024 + 16·q; after a shift
# by 8 the same two masks give codes 2 and 6, then 3 and 7.
PAIR_MAGIC, PAIR_SIXTEENTH, PAIR_MINUS_64 = 0x64006400, 0x2C002C00, 0xD400D400 - 2**32  # f16x2: 1024, 1/16, −64
CODES = (  # word $4 -> its 8 codes as q − z in 4 f16x2: za $5 = (1024 + z)×2, zb $6 = −(64 + z)×2, $7 = (1/16)×2
    "{ .reg .b32 t, h; shr.u32 t, $4, 8;"
    " lop3.b32 h, $4, 0x000F000F, 0x64006400, 0xea; sub.f16x2 $0, h, $5;"          # codes 0, 4: 1024 + q − (1024 + z)
    " lop3.b32 h, $4, 0x00F000F0, 0x64006400, 0xea; fma.rn.f16x2 $1, h, $7, $6;"   # codes 1, 5: (1024 + 16q)/16 − (64 + z)
    " lop3.b32 h, t, 0x000F000F, 0x64006400, 0xea; sub.f16x2 $2, h, $5;"           # codes 2, 6
    " lop3.b32 h, t, 0x00F000F0, 0x64006400, 0xea; fma.rn.f16x2 $3, h, $7, $6; }")  # codes 3, 7
DOT = (  # Σ of 8 f16x2 products ($1 … $8 times $9 … $16), in fp16 per half, then the halves added in float32
    "{ .reg .b32 a; .reg .b16 l, u; .reg .f32 fl, fu; mul.f16x2 a, $1, $9;"
    + "".join(f" fma.rn.f16x2 a, ${i}, ${i + 8}, a;" for i in range(2, 9))
    + " mov.b32 {l, u}, a; cvt.f32.f16 fl, l; cvt.f32.f16 fu, u; add.f32 $0, fl, fu; }")
X_PAIRS = (  # inputs (x0, x1) (x2, x3) (x4, x5) (x6, x7) in $4 … $7 -> (x0, x4) (x1, x5) (x2, x6) (x3, x7), each / 16
    "{ .reg .b32 t, u, v, w, c; mov.b32 c, 0x2C002C00;"
    " prmt.b32 t, $4, $6, 0x5410; prmt.b32 u, $4, $6, 0x7632;"   # (x0, x4) and (x1, x5)
    " prmt.b32 v, $5, $7, 0x5410; prmt.b32 w, $5, $7, 0x7632;"   # (x2, x6) and (x3, x7)
    " mul.f16x2 $0, t, c; mul.f16x2 $1, u, c; mul.f16x2 $2, v, c; mul.f16x2 $3, w, c; }")
