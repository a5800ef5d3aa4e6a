#!/usr/bin/env bash
# The pretraining-objective study on SST-2 (benchmarks/RESULTS.md, "Pretraining that transfers"):
# one corpus (configs/sst2_mlm.yaml: SST-2 train + AG News 10k sentences, no labels, framed
# <cls> ... <sep>), three encoders pretrained for the same wall time on this machine (steps
# calibrated from ms/step measured alone), then SST-2 dev accuracy after fine-tuning on 100 /
# 1,000 / 10,000 labels, 3 seeds each, against random init with the same shape and tokenizer.
# Run from the repository root; each arm is ~30 min of 2 CPU cores, each fine-tuning sweep ~5 min.
#   bash benchmarks/study_pretraining.sh            # all arms
#   ARMS="mlm15" bash benchmarks/study_pretraining.sh
set -euo pipefail
LM=${LM:-.venv/bin/lmforge}
ARMS=${ARMS:-"rtd mlm15 mlm40"}
declare -A SETS=(
  [rtd]="--set pretrain.objective=rtd --set pretrain.max_steps=5100"
  [mlm15]="--set pretrain.objective=mlm --set pretrain.max_steps=6250"
  [mlm40]="--set pretrain.objective=mlm --set pretrain.mlm_probability=0.4 --set pretrain.max_steps=5360"
)
$LM data prepare sst2_mlm --no-progress
finetune_sweep() {  # NAME START COUNTS TAG [extra --set ...]
  local name=$1 start=$2 counts=$3 tag=$4; shift 4
  for s in 1234 1 2; do
    $LM transfer sst2_transfer --set seed=$s --set "transfer.label_counts=$counts" \
      --set "transfer.starts={$name: $start}" --set "transfer.start_lr={$name: 5.0e-4}" \
      --set finetune.tokenizer=runs/sst2_mlm/tokenizer --set transfer.out_dir=runs/study/$tag/${name}_s$s "$@"
  done
}
finetune_sweep random random "[100,1000,10000]" sst2
for arm in $ARMS; do
  $LM pretrain sst2_mlm --overwrite --no-progress --set pretrain.data_dir=runs/sst2_mlm/data/tokens \
    --set pretrain.out_dir=runs/study/$arm --set model.tie_embeddings=false ${SETS[$arm]}
  finetune_sweep $arm runs/study/$arm "[100,1000,10000]" sst2
  finetune_sweep $arm runs/study/$arm "[1000]" sst2_reinit --set finetune.init_embeddings=reinit
done
# the table: mean (min-max) over the seeds, per start and label count
.venv/bin/python - <<'PY'
import json, glob, statistics, collections
rows = collections.defaultdict(list)
for tag in ("sst2", "sst2_reinit"):
    for f in glob.glob(f"runs/study/{tag}/*/results.jsonl"):
        for line in open(f):
            r = json.loads(line)
            rows[(r["start"] + ("+reinit" if tag.endswith("reinit") else ""), r["labels_requested"])].append(r["value"])
for (start, n), v in sorted(rows.items()):
    print(f"{start:16s} {n:6d}  mean {statistics.fmean(v):.4f}  min {min(v):.4f}  max {max(v):.4f}  seeds {len(v)}")
PY
