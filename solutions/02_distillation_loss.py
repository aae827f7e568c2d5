# %% [markdown]
# # Exercise 02: the distillation loss
#
# Two functions to write: the KD loss, then the full distillation loss that adds the labels.
# Each has a check cell after it. Cells further down use the library's versions.

# %%
import math

import torch
import torch.nn.functional as F

from minicomp.grading import check

torch.set_num_threads(1)

# %% [markdown]
# ## Task 1: `kd_loss(student_logits, teacher_logits, temperature)`
#
# $$\text{kd\_loss} = T^2 \cdot \mathrm{KL}\big(p_t \,\|\, p_s\big), \qquad p_t = \mathrm{softmax}(z_t / T),\quad p_s = \mathrm{softmax}(z_s / T)$$
#
# with $\mathrm{KL}(p_t \| p_s) = \sum_c p_{t,c}\,(\log p_{t,c} - \log p_{s,c})$, summed over the
# classes (the last dimension) and **averaged over rows**. Every leading dimension counts as a
# row: `[B, C]` has B rows, `[B, T, C]` has B·T. Return a 0-d tensor.
#
# * The teacher is frozen: no gradient may flow into `teacher_logits`.
# * Use `F.log_softmax` for the logs: `torch.log(torch.softmax(...))` gives `-inf` on huge logits.
# * Check by hand: student [0, 0], teacher [ln 3, 0], T = 1 gives
#   3/4 · ln(3/2) + 1/4 · ln(1/2) ≈ 0.1308.

# %%
def kd_loss(student_logits, teacher_logits, temperature):
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over rows: a 0-d tensor."""
    ### BEGIN SOLUTION
    T = temperature
    log_p_s = F.log_softmax(student_logits / T, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)  # one value per row
    return T * T * kl.mean()
    ### END SOLUTION


# %%
check("kd_loss", kd_loss)

# %% [markdown]
# ## Task 2: `distillation_loss(student_logits, teacher_logits, labels, temperature, alpha)`
#
# $$\alpha \cdot \text{kd\_loss}(z_s, z_t, T) + (1 - \alpha) \cdot \mathrm{CE}(z_s, y)$$
#
# * **alpha weights the teacher's term.** alpha = 1: only the teacher; alpha = 0: only the labels.
# * The cross-entropy uses the student's logits at **T = 1**, averaged over the same rows.
# * `labels` has the logits' shape without the last dimension. `F.cross_entropy` wants
#   `[N, C]` logits and `[N]` labels, so flatten `[B, T, C]` first.
#
# You may call your `kd_loss` from task 1.

# %%
def distillation_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """alpha · kd_loss + (1 − alpha) · cross-entropy with the labels at T = 1."""
    ### BEGIN SOLUTION
    C = student_logits.shape[-1]
    ce = F.cross_entropy(student_logits.reshape(-1, C), labels.reshape(-1))
    return alpha * kd_loss(student_logits, teacher_logits, temperature) + (1 - alpha) * ce
    ### END SOLUTION


# %%
check("distillation_loss", distillation_loss)

# %% [markdown]
# ## Using it
#
# The library's `Distiller` trains a student with exactly these two terms. Here: 60 labelled
# digits (6 per class) plus the unlabelled rest of the training set, one seed, 300 steps.

# %%
from minicomp.data import few_label_split, load_digits
from minicomp.distill import CE, KD, Distiller
from minicomp.models import digits_mlp_student, load_pretrained

digits = load_digits(seed=0)
teacher = load_pretrained("digits_mlp_teacher")
labelled = few_label_split(digits.y_train, 6, seed=0)
y_few = torch.full_like(digits.y_train, -1)  # -1: unlabelled, only the teacher sees these
y_few[labelled] = digits.y_train[labelled]

alone = Distiller(digits_mlp_student(seed=0), None, {"ce": (1.0, CE())}, seed=0)
alone.fit(digits.x_train[labelled], digits.y_train[labelled], steps=300)
distilled = Distiller(digits_mlp_student(seed=0), teacher, {"kd": (0.9, KD(4.0)), "ce": (0.1, CE())}, seed=0)
distilled.fit(digits.x_train, y_few, steps=300)
acc_alone = alone.accuracy(digits.x_test, digits.y_test)
acc_distilled = distilled.accuracy(digits.x_test, digits.y_test)
print(f"student alone, 60 labels: {acc_alone:.1%};  distilled, + unlabelled images: {acc_distilled:.1%}")

# %%
assert acc_distilled > acc_alone + 0.05
