# Job runners for this recipe (Kaldi convention). Local machine by default; on a Slurm
# cluster set cmd_backend=slurm (or export it) and edit conf/slurm.conf for your partitions.
# Training on several GPUs of one machine uses torchrun (see run.sh --ngpu), never these.
cmd_backend=${cmd_backend:-local}
case "$cmd_backend" in
  local)
    export train_cmd="run.pl"
    export cuda_cmd="run.pl"
    export decode_cmd="run.pl"
    ;;
  slurm)
    export train_cmd="slurm.pl --config conf/slurm.conf"
    export cuda_cmd="slurm.pl --config conf/slurm.conf --gpu 1"
    export decode_cmd="slurm.pl --config conf/slurm.conf"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
