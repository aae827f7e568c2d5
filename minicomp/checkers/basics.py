"""Checkers for lesson 00, "Bits, bytes and your hardware"."""

import math

from minicomp.grading import Case, Mistake, register


def _weight_bytes(num_params, bits):
    from minicomp.hardware import weight_bytes

    return weight_bytes(num_params, bits)


def _cases():
    return [
        Case("1,000 float16 weights", (1000, 16)),
        Case("a 7B-parameter model in int4", (7_000_000_000, 4)),
        Case("3 weights at 4 bits (1.5 bytes: a byte can't be split)", (3, 4)),
        Case("one weight at 3 bits (a byte, mostly unused)", (1, 3)),
        Case("3 weights at 3 bits (9 bits: one bit spills into a second byte)", (3, 3)),
        # 8 × 5 bits fill 5 bytes exactly, 5 × 8 bits too: n * bits // 8 + (n % 8 > 0) is right on
        # the first and wrong on the second, round(x + 0.5) wrong on both, which tells them apart
        Case("8 weights at 5 bits (40 bits: exactly 5 bytes)", (8, 5)),
        Case("5 int8 weights (5 bytes, an odd number)", (5, 8)),
        Case("no weights at all", (0, 8)),
    ]


register(
    "weight_bytes",
    params=("num_params", "bits"),
    reference=_weight_bytes,
    cases=_cases,
    atol=0.0,
    rtol=0.0,
    mistakes=[
        Mistake("counting bits instead of bytes", lambda n, b: n * b,
                "A byte holds 8 bits: divide the number of bits by 8."),
        Mistake("assuming 4 bytes per weight", lambda n, b: n * 4,
                "Use the `bits` argument: a weight stored in b bits takes b/8 bytes."),
        Mistake("rounding down", lambda n, b: n * b // 8,
                "Storage comes in whole bytes, so a partly used last byte still counts: round up "
                "(math.ceil, or (n * bits + 7) // 8)."),
        Mistake("rounding to the nearest byte", lambda n, b: round(n * b / 8),
                "A partly used byte still has to be stored, however little of it is used: round up "
                "(math.ceil), not to the nearest."),
        Mistake("returning a fraction of a byte", lambda n, b: n * b / 8,
                "Return a whole number of bytes, rounded up: math.ceil(num_params * bits / 8)."),
        Mistake("always adding one byte", lambda n, b: n * b // 8 + 1,
                "Add a byte only when the bits do not fill the last one: 1,000 × 16 bits are exactly "
                "2,000 bytes. math.ceil(num_params * bits / 8), or (num_params * bits + 7) // 8."),
        Mistake("a whole byte per weight", lambda n, b: n * math.ceil(b / 8),
                "Weights share bytes (two 4-bit weights fit in one): round the total, not each weight. "
                "math.ceil(num_params * bits / 8)."),
        Mistake("bytes per weight rounded down (bits // 8)", lambda n, b: n * (b // 8),
                "bits // 8 (or int(bits / 8), round(bits / 8)) is 0 for 4-bit weights. Multiply first, "
                "then divide: (num_params * bits + 7) // 8."),
        Mistake("adding less than 7 before // 8", lambda n, b: (n * b + 6) // 8,
                "(n * bits + k) // 8 rounds up only when the leftover bits plus k reach 8: 9 bits leave 1 "
                "bit over, which needs k = 7. Use (num_params * bits + 7) // 8, or math.ceil(num_params * bits / 8)."),
        Mistake("(n * bits + 7) / 8 with / instead of //", lambda n, b: (n * b + 7) / 8,
                "In Python 3, / always gives a float: (num_params * bits + 7) / 8 is 2000.875. Use the "
                "integer division //."),
        Mistake("round(x + 0.5) as a ceiling", lambda n, b: round(n * b / 8 + 0.5),
                "round(x + 0.5) is not a ceiling: 5 whole bytes become round(5.5) = 6 (Python rounds "
                "halves to the even neighbour, so it hid on the even sizes). Use "
                "math.ceil(num_params * bits / 8), or (num_params * bits + 7) // 8."),
        Mistake("a byte added when num_params % 8 > 0", lambda n, b: n * b // 8 + (n % 8 > 0),
                "Whether the last byte is only partly used depends on the total number of bits, num_params * "
                "bits, not on num_params: 5 int8 weights are exactly 5 bytes. Use (num_params * bits + 7) // 8."),
        Mistake("returning gigabytes", lambda n, b: math.ceil(n * b / 8) / 1e9,
                "Return plain bytes; convert to GB only when you print."),
    ],
    hint="Total bits = num_params × bits; bytes = total bits / 8, rounded up to a whole byte.",
)
