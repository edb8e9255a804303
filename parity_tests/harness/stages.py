"""The stages a case is judged at, in order: the loss, its gradients, and the double backward's derivatives (the
derivatives of <grad_input, grad_grad_input> wrt grad_output, input and target). No torch import: the report
reads them too."""

FIRST_ORDER = ("loss", "grad_input", "grad_target")
SECOND_ORDER = ("grad_grad_output", "grad2_input", "grad2_target")
STAGES = FIRST_ORDER + SECOND_ORDER
