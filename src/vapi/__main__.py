"""`python -m vapi ...` and `torchrun --nproc_per_node N -m vapi ...`: the CLI, ended through `exit_process` so a
distributed run leaves its process group cleanly (see `vapi.training.distributed`)."""
from vapi.cli import main
from vapi.training.distributed import exit_process

exit_process(main())
