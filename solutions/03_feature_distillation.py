# %% [markdown]
# # Exercise 03: the hint loss
#
# FitNets trains a student layer to predict a teacher layer. The widths differ, so a small
# trainable **adapter** maps the student's feature to the teacher's shape first. Write the loss.

# %%
import torch
import torch.nn as nn
import torch.nn.functional as F

from minicomp.grading import check

torch.set_num_threads(1)

# %% [markdown]
# ## Your task
#
# Write `hint_loss(student_feature, teacher_feature, adapter)`:
#
# $$\text{mean}\big((\,\text{adapter}(u_s) - u_t\,)^2\big)$$
#
# the mean over **every element** of the squared difference between the adapted student
# feature and the teacher's feature.
#
# * `adapter` is an `nn.Module`: an `nn.Linear` for features `[N, C]`, a 1×1 `nn.Conv2d` for
#   feature maps `[N, C, H, W]`. Apply it to the **student's** feature, even when the widths match.
# * The teacher is frozen: no gradient may flow into `teacher_feature`.
# * FitNets writes ½‖·‖² (a sum); here it is the plain mean, the ½ goes into the loss weight.
#
# Check by hand, with an identity adapter: student [[1, 2], [0, 0]], teacher [[1, 5], [0, 2]]
# gives (0 + 9 + 0 + 4) / 4 = 3.25.

# %%
def hint_loss(student_feature, teacher_feature, adapter):
    """mean((adapter(student_feature) - teacher_feature)²), the teacher detached: a 0-d tensor."""
    ### BEGIN SOLUTION
    return ((adapter(student_feature) - teacher_feature.detach()) ** 2).mean()
    ### END SOLUTION


# %%
check("hint_loss", hint_loss)

# %% [markdown]
# ## Using it
#
# The library reads the layers with forward hooks (`Taps`), builds the adapter from their
# shapes (`make_adapter`) and trains it with the student (`Hint` in a `Distiller`). The MLP
# teacher's hidden layer has 256 features, the student's 32.

# %%
from minicomp.data import few_label_split, load_digits
from minicomp.distill import CE, Distiller, Hint, Taps, make_adapter
from minicomp.distill import hint_loss as library_hint_loss
from minicomp.models import digits_mlp_student, load_pretrained

digits = load_digits(seed=0)
teacher, student = load_pretrained("digits_mlp_teacher"), digits_mlp_student(seed=0)
x = digits.x_train[:64]
with Taps(teacher, "hidden") as t_feats, Taps(student, "hidden") as s_feats, torch.no_grad():
    teacher(x), student(x)
adapter = make_adapter(s_feats["hidden"], t_feats["hidden"])
print(adapter, f"hint loss before training: {library_hint_loss(s_feats['hidden'], t_feats['hidden'], adapter):.4f}")

# %%
labelled = few_label_split(digits.y_train, 6, seed=0)
y_few = torch.full_like(digits.y_train, -1)
y_few[labelled] = digits.y_train[labelled]
alone = Distiller(digits_mlp_student(seed=0), None, {"ce": (1.0, CE())}, seed=0)
alone.fit(digits.x_train[labelled], digits.y_train[labelled], steps=300)
hinted = Distiller(digits_mlp_student(seed=0), teacher,
                   {"hint": (100.0, Hint("hidden", "hidden")), "ce": (1.0, CE())}, seed=0)
hinted.fit(digits.x_train, y_few, steps=300)
acc_alone = alone.accuracy(digits.x_test, digits.y_test)
acc_hint = hinted.accuracy(digits.x_test, digits.y_test)
print(f"student alone: {acc_alone:.1%};  with hints on the unlabelled images: {acc_hint:.1%}")
print(f"hint loss: {hinted.history[0]['hint']:.4f} (first steps) -> {hinted.history[-1]['hint']:.4f} (last steps)")

# %%
assert isinstance(adapter, nn.Linear) and adapter.out_features == 256
assert hinted.history[-1]["hint"] < hinted.history[0]["hint"]
assert acc_hint > acc_alone
