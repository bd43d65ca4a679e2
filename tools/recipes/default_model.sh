#!/usr/bin/env bash
# Builds a default model and its evaluation (docs/evaluation.md), from nothing:
# synthetic faces, two in-house CLIPs (one to train with, one only to judge), the three arms
# of the ablation, and the evaluation reports. Every step is seeded; the numbers and wall
# times of the runs it made are in docs/evaluation.md.
#
#   bash tools/recipes/default_model.sh [WORK_DIR]     (default WORK_DIR: runs/)
#
# The faces are the renderer's version 2 (`dataset.json`'s generator_version; glasses and
# smile drawn so a 32 px model sees them), and the defaults make assets/default.safetensors
# (docs/evaluation.md, "Glasses a 32 px CLIP can see", "Trained on to step 3600" and
# "Averaging G over checkpoints" and "The smile, shipped"; MOUTH= gives the model shipped
# before it, and MOUTH= DEFAULT_STEPS=3600 AVERAGE_LAST=1 the one before that, step 3600 alone): CLIP A
# trained 1200 steps with `--hard-negatives`, the judge 1200, the GALIP arm with `--pixel-w 10
# --div-w 2` to step 4800 (folder galip_pixel_div; 3600 for the model shipped before), G
# averaged over its last 8 checkpoints, and then (MOUTH, the last stage) that G fine-tuned
# 2000 steps around `clip_a_mouth` and averaged again (MOUTH= stops before it: the model
# shipped before the smile). assets/eval_clip.safetensors, and
# everything docs/evaluation.md reports before those sections, were made on version 1:
# `git checkout ad60945` and run this script from there (this script's own CLIP B, copied to
# WORK_DIR/eval_clip.safetensors at the end, is version 2's). Its header there lists the
# other settings:
# - the model shipped third (version 1): 32 px, CLIP A at 32 px / patch 4 (400 steps, plain), every arm trained
#   with `--augment-shift 4`; the shipped run is the GALIP arm's settings plus `--pixel-w 10
#   --div-w 2`, trained to step 2100;
# - the two models shipped before it: DIV_W=0 (`--pixel-w 10` alone, folder galip_pixel),
#   and PIXEL_W=0 DIV_W=0 (the GALIP arm itself, trained on: the released objective);
# - the ablation, made before that at 24 px without augmentation:
#     SIZE=24 AUGMENT_SHIFT=0 DEFAULT_ARM=ratlip DEFAULT_STEPS=1200  (2-core CPU, about 2 hours)
#     SIZE=24 AUGMENT_SHIFT=0 GAN_BATCH=32 ABLATION_STEPS=1500 DEFAULT_ARM=galip DEFAULT_STEPS=4609
#                                                                   (the H100 run)
# - the ablation with three seeds at 32 px (the defaults, H100, 1200 steps):
#     ABLATION_SEEDS="0 1 2" EARLY_STEPS=600
#   (arms of seed s > 0 in folders ARM_sS; the RATLIP arm of seeds 1 and 2 was compared at
#   step 1125, where the device time ran out: docs/evaluation.md)
# Steps already done (their output exists) are skipped, so the script can be re-run after an
# interruption; an interrupted training run is continued with `--resume`.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${1:-runs}
R=${RATLIP:-target/release/ratlip}
RECIPES=tools/recipes
[ -x "$R" ] || cargo build --release
mkdir -p "$W"

CLIP_STEPS=${CLIP_STEPS:-1200}  # the CLIP G trains with (at 400 it reads glasses at 0.755, at 1200 at 0.994)
EVAL_CLIP_STEPS=500             # the evaluator
JUDGE_STEPS=${JUDGE_STEPS:-1200}  # the judge of "asked for, then not"
SIZE=${SIZE:-32}     # G's image size: 32 (CLIP A 32 px, patch 4) or 24 (CLIP A 28 px, patch 4)
AUGMENT_SHIFT=${AUGMENT_SHIFT:-4}       # `train --augment-shift`: 0 is the released loop
ABLATION_STEPS=${ABLATION_STEPS:-1200}  # every arm of the ablation (also evaluated at EARLY_STEPS)
ABLATION_SEEDS=${ABLATION_SEEDS:-0}     # each arm once per seed
EARLY_STEPS=${EARLY_STEPS:-400}
GAN_BATCH=${GAN_BATCH:-8}
DEFAULT_ARM=${DEFAULT_ARM:-galip}                # the arm trained on as the default model (assets/default.safetensors),
DEFAULT_STEPS=${DEFAULT_STEPS:-4800}             # trained on (resumed) to this step
PIXEL_W=${PIXEL_W:-10}  # the shipped run's `train --pixel-w` (with DIV_W=0 too: the arm's own run, released objective)
DIV_W=${DIV_W:-2}       # the shipped run's `train --div-w`
AVERAGE_LAST=${AVERAGE_LAST:-8}  # the shipped G is the mean of the run's last N checkpoints (every 100
                                 # steps; `model average`); 1: the last checkpoint alone
HARD_NEGATIVES=${HARD_NEGATIVES-1}  # non-empty (the default): CLIP A trains with `--hard-negatives`;
                                   # the evaluator CLIP B never does. Changing it needs a fresh WORK_DIR.
JUDGE=${JUDGE-1}  # non-empty (the default): also train CLIP B with `--hard-negatives` (clip_b_hn, seed 1)
                  # and let it judge every report's "asked for, then not" (eval --judge): it reads glasses
case $SIZE in 32) CLIP_A_CONFIG=clip_a32.json ;; 24) CLIP_A_CONFIG=clip_a.json ;;
  *) echo "SIZE must be 32 or 24" >&2; exit 2 ;; esac

step() { echo "$W/$1/checkpoints/step_$(printf %06d "$2").safetensors"; }  # run step → its checkpoint
synth() { [ -f "$2/dataset.json" ] || "$R" dataset synth --kind faces --size 32 --count "$1" --out "$2" --seed "$3"; }
synth 10000 "$W/faces32" 0        # training set; train-clip holds out its last 500
synth 500 "$W/faces32_eval" 7     # evaluation set: a seed no model or CLIP saw

clip() { # name config steps seed [extra args]
  local name=$1 config=$2 steps=$3 seed=$4; shift 4
  if [ -f "$(step "$name" "$steps")" ]; then return; fi
  if [ -d "$W/$name" ]; then "$R" train-clip --resume "$W/$name" --steps "$steps"
  else "$R" train-clip --data "$W/faces32" --out "$W/$name" --config "$RECIPES/$config" --batch 64 --steps "$steps" \
         --seed "$seed" --holdout 500 --checkpoint-every 100 --keep 2 "$@"; fi
}
clip clip_a "$CLIP_A_CONFIG" "$CLIP_STEPS" 0 ${HARD_NEGATIVES:+--hard-negatives}
clip clip_b clip_b.json "$EVAL_CLIP_STEPS" 1
CLIP_A=$(step clip_a "$CLIP_STEPS")
CLIP_B=$(step clip_b "$EVAL_CLIP_STEPS")
JUDGE_ARGS=()
if [ -n "$JUDGE" ]; then
  clip clip_b_hn clip_b.json "$JUDGE_STEPS" 1 --hard-negatives
  JUDGE_ARGS=(--judge "$(step clip_b_hn "$JUDGE_STEPS")")
fi

gan() { # name steps config [extra args]; SEED (default 0) seeds the run
  local name=$1 steps=$2 config=$3; shift 3
  if [ -f "$(step "$name" "$steps")" ]; then return; fi
  if [ -d "$W/$name" ]; then "$R" train --resume "$W/$name" --steps "$steps"
  else "$R" train --data "$W/faces32" --out "$W/$name" --clip "$CLIP_A" --config "$RECIPES/$config" \
         --batch "$GAN_BATCH" --steps "$steps" --seed "${SEED:-0}" --sample-every 100 --checkpoint-every 100 --keep 100 \
         --augment-shift "$AUGMENT_SHIFT" "$@"; fi
}
arm_args() { # the config (and flag) of each arm
  case $1 in galip) echo "galip_faces$SIZE.json" ;; ratlip_no_sa) echo "ratlip_faces$SIZE.json" --no-shuffle-attention ;;
    ratlip) echo "ratlip_faces$SIZE.json" ;; *) echo "unknown arm $1" >&2; exit 2 ;; esac
}
run_name() { if [ "$2" = 0 ]; then echo "$1"; else echo "$1_s$2"; fi; }  # arm seed → folder
for seed in $ABLATION_SEEDS; do
  for arm in galip ratlip_no_sa ratlip; do SEED=$seed gan "$(run_name "$arm" "$seed")" "$ABLATION_STEPS" $(arm_args "$arm"); done
done
# The shipped run's folder says which terms it adds to the released objective.
SHIPPED=$DEFAULT_ARM; EXTRA=()
if [ "$PIXEL_W" != 0 ]; then SHIPPED+=_pixel; EXTRA+=(--pixel-w "$PIXEL_W"); fi
if [ "$DIV_W" != 0 ]; then SHIPPED+=_div; EXTRA+=(--div-w "$DIV_W"); fi
gan "$SHIPPED" "$DEFAULT_STEPS" $(arm_args "$DEFAULT_ARM") ${EXTRA[@]+"${EXTRA[@]}"}

report() { # model out [judge args; default JUDGE_ARGS]
  local model=$1 out=$2; shift 2
  local judge=("$@"); [ $# -gt 0 ] || judge=(${JUDGE_ARGS[@]+"${JUDGE_ARGS[@]}"})
  [ -f "$out/report.json" ] || "$R" eval --model "$model" --data "$W/faces32_eval" --evaluator "$CLIP_B" --out "$out" --count 500 --seed 0 \
    ${judge[@]+"${judge[@]}"}
}
average() { # run last_step out: the run's G averaged over its last AVERAGE_LAST checkpoints (every 100 steps)
  local last=() k
  for ((k = AVERAGE_LAST - 1; k >= 0; k--)); do last+=("$(step "$1" $(($2 - 100 * k)))"); done
  "$R" model average "${last[@]}" -o "$3"
}
for seed in $ABLATION_SEEDS; do
  for arm in galip ratlip_no_sa ratlip; do
    run=$(run_name "$arm" "$seed")
    for at in "$EARLY_STEPS" "$ABLATION_STEPS"; do
      report "$(step "$run" "$at")" "$W/eval/${run}_$at"
      "$R" compare --model "$(step "$run" "$at")" --prompt "He is young, receding hairline" \
        --prompt "He is old, receding hairline" --seeds 1,2,3,4,5,6 --zoom 4 -o "$W/eval/young_old_${run}_$at.png"
    done
  done
done
report "$(step "$SHIPPED" "$DEFAULT_STEPS")" "$W/eval/shipped_$DEFAULT_STEPS"
if [ "$AVERAGE_LAST" -gt 1 ]; then
  average "$SHIPPED" "$DEFAULT_STEPS" "$W/default.safetensors"
  report "$W/default.safetensors" "$W/eval/shipped_${DEFAULT_STEPS}_average_$AVERAGE_LAST"
else
  cp "$(step "$SHIPPED" "$DEFAULT_STEPS")" "$W/default.safetensors"
fi

# The smile (docs/evaluation.md, "The smile, shipped"): CLIP A trained afresh with both
# attribute heads on expression and glasses alone (`clip_a_mouth`, the first CLIP here that
# reads the mouth), the averaged G above fine-tuned around it for MOUTH_STEPS, and that run's
# last AVERAGE_LAST checkpoints averaged: assets/default.safetensors. `clip_b_mouth`, the same
# recipe on CLIP B's config and seed, judges the mood (eval --judge). MOUTH= (empty) stops at
# the model above, which assets/ shipped before.
MOUTH=${MOUTH-1}
MOUTH_CLIP_STEPS=800
MOUTH_STEPS=${MOUTH_STEPS:-2000}
if [ -n "$MOUTH" ]; then
  [ "$AVERAGE_LAST" -gt 1 ] || { echo "MOUTH fine-tunes the averaged G: AVERAGE_LAST must be > 1" >&2; exit 2; }
  HEADS=(--hard-negatives --attribute-w 10 --text-attribute-w 4 --head-attributes expression,glasses)
  clip clip_a_mouth "$CLIP_A_CONFIG" "$MOUTH_CLIP_STEPS" 0 "${HEADS[@]}"
  clip clip_b_mouth clip_b.json "$MOUTH_CLIP_STEPS" 1 "${HEADS[@]}"
  [ -f "$W/before_mouth.safetensors" ] || cp "$W/default.safetensors" "$W/before_mouth.safetensors"
  if [ ! -f "$(step galip_mouth "$MOUTH_STEPS")" ]; then
    if [ -d "$W/galip_mouth" ]; then "$R" train --resume "$W/galip_mouth" --steps "$MOUTH_STEPS"
    else "$R" train --data "$W/faces32" --out "$W/galip_mouth" --model "$W/before_mouth.safetensors" \
           --clip "$(step clip_a_mouth "$MOUTH_CLIP_STEPS")" --batch "$GAN_BATCH" --steps "$MOUTH_STEPS" --seed 0 \
           --sample-every 100 --checkpoint-every 100 --keep 100 --augment-shift "$AUGMENT_SHIFT" ${EXTRA[@]+"${EXTRA[@]}"}; fi
  fi
  average galip_mouth "$MOUTH_STEPS" "$W/default.safetensors"
  report "$W/default.safetensors" "$W/eval/mouth_${MOUTH_STEPS}_average_$AVERAGE_LAST" --judge "$(step clip_b_mouth "$MOUTH_CLIP_STEPS")"
fi

cp "$CLIP_B" "$W/eval_clip.safetensors"
echo "done: $W/default.safetensors (assets/default.safetensors is this run's, MOUTH stage included) and $W/eval_clip.safetensors (version 2's evaluator; assets/ ships version 1's: docs/evaluation.md), reports in $W/eval/"
