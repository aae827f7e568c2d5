# %% [markdown]
# # Exercise 08: the AWQ scale search for one layer
#
# AWQ multiplies the weight columns that meet large activations by s > 1 before rounding, and
# divides the layer's input by s, which changes nothing in float:
# y = x Wᵀ = (x / s) (W s)ᵀ ≈ (x / s) Q(W s)ᵀ. The effective quantized weight is Q(W s) / s.
# It sets s = s_x^α, with s_x = mean |x| per input channel, and picks α by a grid search
# (lesson 08).

# %%
import torch

from minicomp.awq import output_error
from minicomp.grading import check
from minicomp.quant import quantize_dequantize

# %% [markdown]
# ## Your task
#
# Write `awq_scale_search(W, x_scale, H, bits, group_size)` returning the best scale `s [in]`:
#
# 1. for α = 0, 1/20, …, 19/20: `s = x_scale ** α`, at least 1e-4, then divided by
#    `sqrt(s.max() * s.min())` (so that the scales sit around 1);
# 2. `W_hat = quantize_dequantize(W * s, bits, group_size=group_size) / s`;
# 3. its error is `output_error(W, W_hat, H)` (‖X Wᵀ − X Ŵᵀ‖² through H = 2XᵀX / tokens);
# 4. return the `s` with the smallest error (the first one on a tie).

# %%
def awq_scale_search(W, x_scale, H, bits, group_size):
    """The AWQ scale s [in] for W [out, in], given mean |x| per channel x_scale [in] and H [in, in]."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: replace this line with your code")


# %%
check("awq_scale_search", awq_scale_search)

# %% [markdown]
# ## Using it
#
# The library's `minicomp.awq.awq_search_scale` runs the same search and also returns the curve;
# `awq_quantize` adds clipping. On a layer with a few loud input channels AWQ beats RTN:

# %%
from minicomp.awq import activation_scales, awq_quantize
from minicomp.gptq import input_hessian
from minicomp.rtn import rtn_quantize

g = torch.Generator().manual_seed(0)
W = torch.randn(32, 128, generator=g) * 0.1
X = torch.randn(512, 128, generator=g)
X[:, :4] *= 20  # four salient channels
H = input_hessian([X])
qw, s = awq_quantize(W, [X], bits=3, group_size=64)
e_rtn = output_error(W, rtn_quantize(W, 3, 64).dequantize(), H).item()
e_awq = output_error(W, qw.dequantize() / s, H).item()
print(f"mean |x| of the loud channels: {activation_scales([X])[:4].mean():.1f}   "
      f"layer output error  RTN {e_rtn:.4f}   AWQ {e_awq:.4f}")
assert e_awq < e_rtn
