#!/usr/bin/env bash
# The pretraining-objective study on SST-2 (benchmarks/RESULTS.md, "Pretraining that transfers"):
# one corpus (configs/sst2_mlm.yaml: SST-2 train + AG News 10k sentences, no labels, framed
# <cls> ... <sep>), three encoders pretrained for the same wall time on this machine (steps
# calibrated from ms/step measured alone), then SST-2 dev accuracy after fine-tuning on 100 /
# 1,000 / 10,000 labels, 3 seeds each, against random init with the same shape and tokenizer.
# Run from the repository root; each 30-minute arm is ~30 min of 2 CPU cores (cooc_init: ~10 s),
# each fine-tuning sweep ~5-10 min. Fine-tuning lr: LR (default 2e-4, the best of {1e-4, 2e-4,
# 5e-4, 1e-3} for random init and for cooc_init alike at 1k labels; RESULTS.md). AG News at 100 and
# 1,000 labels too when AGNEWS=1.
#   bash benchmarks/study_pretraining.sh            # the default arms
#   ARMS="cooc_init" AGNEWS=1 bash benchmarks/study_pretraining.sh
set -euo pipefail
LM=${LM:-.venv/bin/lmforge}
ARMS=${ARMS:-"cooc_init cooc_mlm15"}
LR=${LR:-2.0e-4}
declare -A SETS=(
  [cooc_init]="--set pretrain.embedding_init=cooccurrence --set pretrain.max_steps=0"
  [cooc_mlm15]="--set pretrain.embedding_init=cooccurrence --set pretrain.objective=mlm --set pretrain.max_steps=6250"
  [rtd]="--set pretrain.objective=rtd --set pretrain.max_steps=5100"
  [mlm15]="--set pretrain.objective=mlm --set pretrain.max_steps=6250"
  [mlm40]="--set pretrain.objective=mlm --set pretrain.mlm_probability=0.4 --set pretrain.max_steps=5360"
)
$LM data prepare sst2_mlm --no-progress
finetune_sweep() {  # NAME START COUNTS TAG [extra --set ...]  (TASK=agnews_transfer for AG News)
  local name=$1 start=$2 counts=$3 tag=$4; shift 4
  for s in 1234 1 2; do
    $LM transfer ${TASK:-sst2_transfer} --set seed=$s --set "transfer.label_counts=$counts" \
      --set "transfer.starts={$name: $start}" --set "transfer.start_lr={$name: $LR}" \
      --set finetune.tokenizer=runs/sst2_mlm/tokenizer --set transfer.out_dir=runs/study/$tag/${name}_s$s "$@"
  done
}
finetune_sweep random random "[100,1000,10000]" sst2
if [ "${AGNEWS:-0}" = 1 ]; then TASK=agnews_transfer finetune_sweep random random "[100,1000]" agnews; fi
for arm in $ARMS; do
  $LM pretrain sst2_mlm --overwrite --no-progress --set pretrain.data_dir=runs/sst2_mlm/data/tokens \
    --set pretrain.out_dir=runs/study/$arm --set model.tie_embeddings=false ${SETS[$arm]}
  finetune_sweep $arm runs/study/$arm "[100,1000,10000]" sst2
  if [ "${AGNEWS:-0}" = 1 ]; then TASK=agnews_transfer finetune_sweep $arm runs/study/$arm "[100,1000]" agnews; fi
done
# the table: mean (min-max) over the seeds, per start and label count
.venv/bin/python - <<'PY'
import json, glob, statistics, collections
rows = collections.defaultdict(list)
for tag in ("sst2", "agnews"):
    for f in glob.glob(f"runs/study/{tag}/*/results.jsonl"):
        for line in open(f):
            r = json.loads(line)
            rows[(tag + " " + r["start"], r["labels_requested"])].append(r["value"])
for (start, n), v in sorted(rows.items()):
    print(f"{start:24s} {n:6d}  mean {statistics.fmean(v):.4f}  min {min(v):.4f}  max {max(v):.4f}  seeds {len(v)}")
PY
