import { recordLines } from "../data/write.js";
import type { LoraTarget } from "../model/lora.js";
import { modelName } from "./model.js";
import { gptSftConfig } from "./nemo-aligner-config.js";
import {
  type BuiltJob,
  bashScript,
  convertAndServe,
  epochsFor,
  type JobPlan,
  type Launch,
  LORA_OFF,
  launchShapes,
  localRows,
  refuse,
  type Shape,
  totalSteps,
  unsplittable,
} from "./plan.js";
import { toYaml } from "./yaml.js";

/**
 * A NeMo-Aligner 0.7.0 job, the SteerLM reference: a complete copy of its examples/nlp/gpt/conf/gpt_sft.yaml
 * with steerlm's values (Hydra reads the job's file instead of the shipped one), SteerLM JSONL exactly as
 * steerlm writes it, and run.sh for train_gpt_sft.py. The model is a `.nemo` checkpoint; a Hugging Face
 * model is converted first with NeMo's converter. docs/engines-training.md has the sources of every rule.
 */

/** NeMo's fused LoRA modules and the projections each one adapts. */
const FUSED_MODULES: ReadonlyArray<[string, readonly LoraTarget[]]> = [
  ["attention_qkv", ["q", "k", "v"]],
  ["attention_dense", ["o"]],
  ["mlp_fc1", ["gate", "up"]],
  ["mlp_fc2", ["down"]],
];

/** distributed_fused_adam's own epsilon: gpt_sft.yaml has no key for it. */
const FUSED_ADAM_EPS = 1e-8;

/** The model file the README's conversion step writes, when the job starts from a Hugging Face model. */
const CONVERTED = "model.nemo";

export function nemoAlignerJob(plan: JobPlan): BuiltJob {
  const { cfg } = plan;
  if (cfg.eps !== FUSED_ADAM_EPS) {
    throw refuse(
      plan,
      "eps",
      `an AdamW epsilon of ${cfg.eps}: gpt_sft.yaml has no epsilon key, and distributed_fused_adam uses ${FUSED_ADAM_EPS}`,
      `export with eps ${FUSED_ADAM_EPS}`,
    );
  }
  const modules = cfg.lora ? fusedModules(plan) : [];
  if (cfg.lora && cfg.loraAlpha !== cfg.loraRank) {
    throw refuse(
      plan,
      "loraAlpha",
      `a LoRA alpha (${cfg.loraAlpha}) other than the rank (${cfg.loraRank}) in a model that comes back to steerlm: ` +
        "its .nemo holds the adapter only, and NeMo's merge script (merge_lora_weights/merge.py) adds it to the base without the alpha / rank scale the adapter trained with",
      `export with loraAlpha ${cfg.loraRank} (the rank), or without lora`,
    );
  }
  if (plan.val === null) {
    throw refuse(
      plan,
      "val",
      "a run without validation data: gpt_sft.yaml requires model.data.validation_ds.file_path",
      "give validation data (val)",
    );
  }
  const steps = totalSteps(cfg, plan.train.length);
  if (cfg.warmupSteps < 1 || steps <= cfg.warmupSteps) {
    throw refuse(
      plan,
      "warmupSteps",
      cfg.warmupSteps < 1
        ? "steerlm's schedule without warm-up: CosineAnnealing from the first update lags steerlm's by one"
        : `a run of ${steps} updates that is all warm-up (warmupSteps ${cfg.warmupSteps})`,
      cfg.warmupSteps < 1
        ? "export with warmupSteps 1 or more"
        : "export with fewer warmupSteps or more steps",
    );
  }
  const epochs = epochsFor(plan, steps, plan.train.length);
  const global = cfg.batchSize * cfg.gradAccum;
  if (plan.val.length < global) {
    throw refuse(
      plan,
      "val",
      `validation on ${plan.val.length} conversations: it evaluates whole batches of ${global} (batchSize × gradAccum) and drops the rest`,
      "give more validation conversations, or a smaller batchSize × gradAccum (evalBatches also limits them)",
    );
  }
  const model = plan.model.kind === "nemo" ? plan.model.path : CONVERTED;
  // the `type` key steerlm keeps but does not read: NeMo masks such a conversation the other way round
  const textToValue = plan.train.filter((r) => r.extra.get("type") === "TEXT_TO_VALUE").length;
  const config = gptSftConfig(plan, { steps, epochs, model, modules });
  const line = (r: (typeof plan.train)[number]) => `${recordLines(r, "steerlm").join("\n")}\n`;
  const runSh = bashScript(
    [
      "NeMo-Aligner 0.7.0 SFT, written by steerlm export job. Run inside a NeMo container with NeMo-Aligner 0.7.0",
      "(NEMO_ALIGNER: its checkout, default /opt/NeMo-Aligner); extra arguments are Hydra overrides, e.g.",
      "trainer.devices=8. The config's paths are relative to this folder.",
    ],
    [
      'cd "$JOB"',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion, not a template
      'exec python "${NEMO_ALIGNER:-/opt/NeMo-Aligner}/examples/nlp/gpt/train_gpt_sft.py" \\',
      '  --config-path="$JOB" --config-name=sft "$@"',
    ],
  );
  return {
    config: { path: "sft.yaml", value: config },
    steps,
    files: [
      {
        path: "sft.yaml",
        text: toYaml(config, [
          "NeMo-Aligner 0.7.0 SFT config (gpt_sft.yaml with steerlm's values), written by steerlm export job: run it with run.sh",
        ]),
      },
      { path: "run.sh", text: runSh, executable: true },
      { path: "data/train.jsonl", text: plan.train.map(line).join("") },
      { path: "data/validation.jsonl", text: plan.val.map(line).join("") },
    ],
    mapping: {
      data: {
        keys: ["model.data.train_ds.file_path"],
        exact: "exact",
        note: `data/train.jsonl: ${plan.train.length} conversations, SteerLM JSONL as \`steerlm data convert --to steerlm\` writes it`,
      },
      val: {
        keys: ["model.data.validation_ds.file_path"],
        exact: "exact",
        note: `data/validation.jsonl: ${plan.val.length} conversations`,
      },
      output: {
        keys: ["exp_manager.explicit_log_dir"],
        exact: "n/a",
        note: "the job folder; NeMo writes into results/ inside it",
      },
      ...localRows(plan),
      model: {
        keys: ["model.restore_from_path"],
        exact: "exact",
        note:
          plan.model.kind === "nemo"
            ? undefined
            : `${CONVERTED}, converted from ${modelName(plan.model)} (Install, below)`,
      },
      lora: { keys: ["model.peft.peft_scheme"], exact: "exact" },
      loraRank: cfg.lora ? { keys: ["model.peft.lora_tuning.adapter_dim"], exact: "exact" } : LORA_OFF,
      loraAlpha: cfg.lora
        ? {
            keys: ["model.peft.lora_tuning.alpha"],
            exact: "exact",
            note: "not in gpt_sft.yaml; NeMo reads it (default: adapter_dim). Equal to the rank: NeMo's LoRA merge leaves out the scale",
          }
        : LORA_OFF,
      loraTargets: cfg.lora
        ? {
            keys: ["model.peft.lora_tuning.target_modules"],
            exact: "exact",
            note: "NeMo's fused modules: q,k,v = attention_qkv, o = attention_dense, gate,up = mlp_fc1, down = mlp_fc2",
          }
        : LORA_OFF,
      computeType: {
        keys: ["trainer.precision"],
        exact: cfg.computeType === "f32" ? "exact" : "close",
        note:
          cfg.computeType === "f32" ? undefined : "bf16 autocast with f32 weights (megatron_amp_O2 false)",
      },
      seqLen: {
        keys: ["model.data.train_ds.max_seq_length", "model.data.validation_ds.max_seq_length"],
        exact: "exact",
        note: "longer conversations are cut at the end, as steerlm cuts them",
      },
      batchSize: { keys: ["model.data.train_ds.micro_batch_size", "model.micro_batch_size"], exact: "exact" },
      gradAccum: {
        keys: ["model.data.train_ds.global_batch_size", "model.global_batch_size"],
        exact: "close",
        note: "batchSize × gradAccum sequences per update over all GPUs; how NeMo weighs micro-batches with different token counts is not checked here",
      },
      steps:
        cfg.steps > 0
          ? { keys: ["trainer.sft.max_steps"], exact: "exact" }
          : { keys: [], exact: "n/a", note: "0: the epochs decide" },
      epochs:
        cfg.steps > 0
          ? {
              keys: ["trainer.sft.max_epochs"],
              exact: "n/a",
              note: "steps is set; enough epochs to reach them",
            }
          : {
              keys: ["trainer.sft.max_steps", "trainer.sft.max_epochs"],
              exact: "close",
              note: `⌈${cfg.epochs} × ${plan.train.length} / ${global}⌉ updates; each epoch drops its last partial batch, so the epochs needed for them`,
            },
      lr: { keys: ["model.optim.name", "model.optim.lr"], exact: "exact" },
      warmupSteps: {
        keys: [
          "model.optim.sched.name",
          "model.optim.sched.warmup_steps",
          "model.optim.sched.constant_steps",
          "model.optim.sched.max_steps",
        ],
        exact: "exact",
        note: "CosineAnnealing steps after each update: warmup_steps W − 1 and max_steps T − 1 give lr·k/W, then steerlm's cosine",
      },
      minLrRatio: { keys: ["model.optim.sched.min_lr"], exact: "exact", note: "lr × minLrRatio" },
      weightDecay: {
        keys: ["model.optim.weight_decay"],
        exact: "close",
        note: "which parameters NeMo's optimizer groups decay is not checked here",
      },
      maxGradNorm: {
        keys: ["trainer.sft.gradient_clip_val", "trainer.gradient_clip_val"],
        exact: "exact",
        note: cfg.maxGradNorm === 0 ? "0: no clipping" : undefined,
      },
      beta1: { keys: ["model.optim.betas"], exact: "exact" },
      beta2: { keys: ["model.optim.betas"], exact: "exact" },
      eps: { keys: [], exact: "exact", note: `distributed_fused_adam's own ${FUSED_ADAM_EPS} (no key)` },
      seed: { keys: ["model.seed"], exact: "close", note: "seeds NeMo's own data order, not steerlm's" },
      evalEvery: { keys: ["trainer.sft.val_check_interval"], exact: "exact" },
      evalBatches: {
        keys: ["trainer.sft.limit_val_batches", "model.data.validation_ds.global_batch_size"],
        exact: "close",
        note: `data/validation.jsonl holds the first evalBatches × batchSize validation conversations (0: all); NeMo evaluates them in whole batches of ${global} and drops the rest`,
      },
      checkpointEvery: { keys: ["trainer.sft.save_interval"], exact: "exact" },
      keepCheckpoints: {
        keys: [
          "exp_manager.checkpoint_callback_params.save_top_k",
          "exp_manager.checkpoint_callback_params.monitor",
        ],
        exact: "close",
        note: "NeMo keeps the ones with the lowest validation loss, not the newest",
      },
    },
    fixed: [
      {
        keys: ["model.data.chat", "model.data.chat_prompt_tokens"],
        note: "SteerLM's chat format and control tokens (NeMo-Aligner's SteerLM guide)",
      },
      {
        keys: ["model.data.train_ds.add_eos", "model.data.train_ds.hf_dataset"],
        note: "as NeMo-Aligner's SteerLM guide trains",
      },
      { keys: ["model.optim.sched.constant_steps"], note: "0: the plain warm-up + cosine schedule" },
      {
        keys: ["exp_manager.checkpoint_callback_params.save_nemo_on_train_end"],
        note: "a .nemo at the end, to bring back",
      },
      ...(cfg.lora
        ? [{ keys: ["model.peft.lora_tuning.adapter_dropout"], note: "steerlm's LoRA has no dropout" }]
        : []),
    ],
    facts: [
      `${plan.train.length} training conversations, ${plan.val.length} validation conversations.`,
      `${steps} optimiser updates of ${global} sequences (trainer.sft.max_steps), over at most ${epochs} epoch${epochs === 1 ? "" : "s"}.`,
    ],
    install: [
      "# inside a NeMo container that ships NeMo-Aligner 0.7.0",
      ...(plan.model.kind === "nemo"
        ? []
        : [
            `python /opt/NeMo/scripts/checkpoint_converters/convert_llama_hf_to_nemo.py --input_name_or_path ${modelName(plan.model)} --output_path <this folder>/${CONVERTED}`,
          ]),
    ],
    launches: launchShapes(plan).map((s) => launch(plan, s)),
    bringBack: bringBack(plan, model),
    differences: [
      "NeMo masks the conversations itself (nemo/collections/nlp/data/language_modeling/megatron/gpt_sft_chat_dataset.py): the responses and their turn ends carry the loss, as in steerlm.",
      ...(textToValue > 0
        ? [
            `${textToValue} training conversations have \`"type": "TEXT_TO_VALUE"\`: NeMo trains their value lines instead of their responses; steerlm trains the responses of every conversation.`,
          ]
        : []),
    ],
  };
}

/** The final `.nemo` (save_nemo_on_train_end), relative to the job folder. */
const FINAL = "results/checkpoints/megatron_gpt_sft.nemo";

/**
 * From the final `.nemo` to a GGUF. A LoRA run's `.nemo` holds the adapter only (NeMo's PEFT models save just
 * their adapter weights: NLPAdapterModelMixin.state_dict), so NeMo's merge script folds it into the base first.
 */
function bringBack(plan: JobPlan, base: string): string[] {
  const merge = plan.cfg.lora
    ? [
        "python /opt/NeMo/scripts/nlp_language_modeling/merge_lora_weights/merge.py trainer.precision=32 \\",
        `  gpt_model_file=${base} lora_model_path=${FINAL} merged_model_path=merged.nemo`,
      ]
    : [];
  return [
    plan.cfg.lora
      ? `The run ends with \`${FINAL}\`, which holds the LoRA adapter only: NeMo's merge script folds it into the base (\`${base}\`), then NeMo's converter makes a Hugging Face directory of the merged model, given the Hugging Face model it started from; then convert that. From this folder:`
      : `The run ends with \`${FINAL}\`. NeMo's converter makes a Hugging Face directory of it, given the Hugging Face model it started from; then convert that. From this folder:`,
    [
      "```sh",
      ...merge,
      "BASE=<the base Hugging Face directory>",
      "python /opt/NeMo/scripts/checkpoint_converters/convert_llama_nemo_to_hf.py \\",
      `  --input_name_or_path ${plan.cfg.lora ? "merged.nemo" : FINAL} --output_path hf/pytorch_model.bin \\`,
      "  --hf_input_path $BASE --hf_output_path hf",
      "# the converter writes a tokenizer only from a SentencePiece --input_tokenizer: take the base's",
      "for f in tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do",
      '  if [ -e "$BASE/$f" ]; then cp "$BASE/$f" hf/; fi',
      "done",
      ...convertAndServe("hf"),
      "```",
    ].join("\n"),
  ];
}

function launch(plan: JobPlan, shape: Shape): Launch {
  if (shape.batch === null) return unsplittable(plan, shape);
  const micro =
    shape.batch.perDevice === plan.cfg.batchSize
      ? ""
      : ` model.data.train_ds.micro_batch_size=${shape.batch.perDevice} model.micro_batch_size=${shape.batch.perDevice} model.data.validation_ds.micro_batch_size=${shape.batch.perDevice}`;
  const size =
    shape.gpus * shape.nodes === 1 ? "" : ` trainer.devices=${shape.gpus} trainer.num_nodes=${shape.nodes}`;
  const command = `bash <this folder>/run.sh${size}${micro}`;
  if (shape.nodes === 1) return { title: shape.title, commands: [command] };
  return {
    title: shape.title,
    commands: [
      `srun --nodes=${shape.nodes} --ntasks-per-node=${shape.gpus} --gpus-per-node=${shape.gpus} ${command}`,
    ],
    note: "One task per GPU, as NeMo-Aligner's SteerLM guide launches it.",
  };
}

function fusedModules(plan: JobPlan): string[] {
  const targets = new Set(plan.cfg.loraTargets);
  const out: string[] = [];
  for (const [name, parts] of FUSED_MODULES) {
    const have = parts.filter((p) => targets.has(p));
    if (have.length === 0) continue;
    if (have.length < parts.length) {
      throw refuse(
        plan,
        "loraTargets",
        `LoRA on ${have.join(",")} without ${parts.filter((p) => !targets.has(p)).join(",")}: NeMo adapts ${parts.join(",")} as one fused module (${name})`,
        `use whole groups: ${FUSED_MODULES.map(([n, p]) => `${p.join(",")} (${n})`).join(", ")}`,
      );
    }
    out.push(name);
  }
  return out;
}
