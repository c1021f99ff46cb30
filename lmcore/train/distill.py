"""Knowledge distillation (Hinton et al. 2015; DistilBERT and DistilGPT-2, Sanh et al. 2019): the student learns
the teacher's distribution over the next token, softened by a temperature T, beside the data's own tokens:

    loss = alpha x KL(teacher_T || student_T) x T^2 + (1 - alpha) x cross-entropy

The T^2 keeps the soft term's gradients on the scale of the hard one's as T grows (Hinton et al., section 2). The
teacher runs in evaluation mode without gradients, on the student's inputs; it shares the student's tokenizer.
"""

import torch
import torch.nn.functional as F

from lmcore.model.folder import other_model
from lmcore.tokens.chat import IGNORE


class Distillation(torch.nn.Module):
    """The student's training objective: its forward returns (student logits, the distillation loss). The teacher is
    held outside the module's parameters, so that the optimizer, DDP and checkpoints see the student alone."""

    def __init__(self, student, teacher, temperature, alpha):
        super().__init__()
        self.student, self.teacher = student, [teacher.eval().requires_grad_(False)]
        self.temperature, self.alpha = temperature, alpha

    def forward(self, x, y, segments=None):
        logits, hard = self.student(x, y, segments)
        with torch.no_grad():
            teacher_logits = self.teacher[0](x, segments=segments)[0]
        scored = y != IGNORE  # (B, T): positions with a target; the soft term is their mean
        T = self.temperature
        soft = F.kl_div(
            F.log_softmax(logits[scored].float() / T, dim=-1),
            F.log_softmax(teacher_logits[scored].float() / T, dim=-1),
            log_target=True,
            reduction="batchmean",
        )  # sum over the vocabulary of p_teacher (log p_teacher - log p_student), mean over positions
        return logits, self.alpha * soft * T * T + (1 - self.alpha) * hard


def load_teacher(distill, models_dir, tokenizer, context_length, device):
    """The teacher named by `distill.teacher.model`, in evaluation mode on `device`, checked against the student."""
    teacher = other_model(models_dir, distill["teacher"]["model"], tokenizer, device, "distill.teacher")
    if teacher.cfg.context_length < context_length:
        raise ValueError(
            f"distill.teacher {distill['teacher']['model']}: a context of {teacher.cfg.context_length} tokens, "
            f"shorter than the student's {context_length}"
        )
    return teacher
