import { CONTROL_TOKENS } from "../data/template.js";
import { hfLoraModule } from "../interop/hf-tensors.js";
import { jsonl, promptCompletions } from "./data.js";
import { modelName, tokenizerControlTokens } from "./model.js";
import {
  type BuiltJob,
  convertAndServe,
  type JobFile,
  type JobPlan,
  type Launch,
  LORA_OFF,
  launchShapes,
  localRows,
  type MappingRow,
  refuse,
  type Shape,
  totalSteps,
  unsplittable,
} from "./plan.js";
import { float, toYaml, type YamlValue } from "./yaml.js";

/**
 * A TRL 1.9.0 job: `trl sft --config sft.yaml` (the keys of ScriptArguments, SFTConfig, ModelConfig and
 * transformers' TrainingArguments) on prompt/completion JSONL whose prompt is steerlm's rendered SteerLM
 * prompt, so the loss falls on the completion only; accelerate configs (DeepSpeed ZeRO-3, FSDP2) for more
 * GPUs. docs/engines-training.md has the sources of every rule here.
 */

export function trlJob(plan: JobPlan): BuiltJob {
  const { cfg } = plan;
  if (cfg.lora && !Number.isInteger(cfg.loraAlpha)) {
    throw refuse(
      plan,
      "loraAlpha",
      `a non-integer LoRA alpha (${cfg.loraAlpha}): ModelConfig.lora_alpha is an int`,
      "give an integer loraAlpha",
    );
  }
  const train = plan.train.flatMap((r) => promptCompletions(r, plan.schema));
  const val = plan.val?.flatMap((r) => promptCompletions(r, plan.schema)) ?? null;
  const steps = totalSteps(cfg, train.length);
  // SFTTrainer appends the EOS to each completion unless it already ends with it: with <extra_id_1> as the
  // EOS nothing is appended, as steerlm trains; the EOS must be a token of the tokenizer.
  const control = tokenizerControlTokens(plan.model);
  const turnIsToken = control?.includes(CONTROL_TOKENS.turn) ?? false;
  const config: { [key: string]: YamlValue } = {
    model_name_or_path: modelName(plan.model),
    dtype: "float32",
    dataset_name: "./data",
    dataset_train_split: "train",
    ...(val ? { dataset_test_split: "validation" } : {}),
    output_dir: "output",
    max_length: cfg.seqLen,
    truncation_mode: "keep_start",
    packing: false,
    completion_only_loss: true,
    ...(turnIsToken ? { eos_token: CONTROL_TOKENS.turn } : {}),
    per_device_train_batch_size: cfg.batchSize,
    per_device_eval_batch_size: cfg.batchSize,
    gradient_accumulation_steps: cfg.gradAccum,
    max_steps: steps,
    learning_rate: cfg.lr,
    lr_scheduler_type: "cosine_warmup_with_min_lr",
    lr_scheduler_kwargs: { min_lr_rate: cfg.minLrRatio },
    warmup_steps: cfg.warmupSteps,
    weight_decay: cfg.lora ? 0 : cfg.weightDecay,
    max_grad_norm: cfg.maxGradNorm,
    adam_beta1: cfg.beta1,
    adam_beta2: cfg.beta2,
    adam_epsilon: cfg.eps,
    bf16: cfg.computeType === "bf16",
    seed: cfg.seed,
    use_peft: cfg.lora,
    ...(cfg.lora
      ? {
          lora_r: cfg.loraRank,
          lora_alpha: cfg.loraAlpha,
          lora_dropout: float(0),
          lora_target_modules: cfg.loraTargets.map(hfLoraModule),
        }
      : {}),
    eval_strategy: val ? "steps" : "no",
    ...(val ? { eval_steps: cfg.evalEvery > 0 ? cfg.evalEvery : steps } : {}),
    save_strategy: cfg.checkpointEvery > 0 ? "steps" : "no",
    ...(cfg.checkpointEvery > 0
      ? { save_steps: cfg.checkpointEvery, save_total_limit: cfg.keepCheckpoints }
      : {}),
    report_to: "none",
  };
  const multi = plan.gpus > 1 || plan.nodes > 1;
  const files: JobFile[] = [
    {
      path: "sft.yaml",
      text: toYaml(config, [`TRL 1.9.0: trl sft --config sft.yaml (written by steerlm export job)`]),
    },
    { path: "data/train.jsonl", text: jsonl(train) },
    ...(val ? [{ path: "data/validation.jsonl", text: jsonl(val) }] : []),
    ...(multi ? accelerateConfigs(plan) : []),
  ];
  const loraRow = (key: string, note?: string): MappingRow =>
    cfg.lora ? { keys: [key], exact: "exact", note } : LORA_OFF;
  return {
    config: { path: "sft.yaml", value: config },
    steps,
    files,
    mapping: {
      data: {
        keys: ["dataset_name", "dataset_train_split"],
        exact: "exact",
        note: `data/train.jsonl: ${train.length} prompt/completion lines, one per response`,
      },
      val: val
        ? { keys: ["dataset_test_split"], exact: "exact", note: `data/validation.jsonl: ${val.length} lines` }
        : { keys: ["eval_strategy"], exact: "exact", note: "no validation file" },
      output: {
        keys: ["output_dir"],
        exact: "n/a",
        note: "the job folder; the engine writes into output/ inside it",
      },
      ...localRows(plan),
      model: { keys: ["model_name_or_path"], exact: "exact" },
      lora: { keys: ["use_peft"], exact: "exact" },
      loraRank: loraRow("lora_r"),
      loraAlpha: loraRow("lora_alpha", "scale lora_alpha / lora_r, as steerlm's alpha / rank"),
      loraTargets: loraRow("lora_target_modules", "Llama-family module names"),
      computeType: {
        keys: ["bf16", "dtype"],
        exact: cfg.computeType === "f32" ? "exact" : "close",
        note:
          cfg.computeType === "f32"
            ? "bf16 false is explicit: TRL turns an unset bf16 on"
            : "autocast: bf16 products, f32 weights and AdamW",
      },
      seqLen: {
        keys: ["max_length", "truncation_mode"],
        exact: "close",
        note: "cut at the end as steerlm does; a cut line that kept part of its completion stays",
      },
      batchSize: { keys: ["per_device_train_batch_size", "per_device_eval_batch_size"], exact: "exact" },
      gradAccum: {
        keys: ["gradient_accumulation_steps"],
        exact: cfg.gradAccum === 1 ? "exact" : "close",
        note:
          cfg.gradAccum === 1
            ? undefined
            : "the loss is the token mean over the whole update; steerlm averages the micro-batch means",
      },
      steps:
        cfg.steps > 0
          ? { keys: ["max_steps"], exact: "exact" }
          : { keys: [], exact: "n/a", note: "0: the epochs decide" },
      epochs:
        cfg.steps > 0
          ? { keys: [], exact: "n/a", note: "steps is set" }
          : {
              keys: ["max_steps"],
              exact: "exact",
              note: `⌈${cfg.epochs} × ${train.length} lines / ${cfg.batchSize * cfg.gradAccum}⌉`,
            },
      lr: { keys: ["learning_rate"], exact: "exact" },
      warmupSteps: { keys: ["warmup_steps"], exact: "exact" },
      minLrRatio: {
        keys: ["lr_scheduler_type", "lr_scheduler_kwargs.min_lr_rate"],
        exact: "exact",
        note: "warm-up k/W, then the cosine to lr × minLrRatio at max_steps, update for update",
      },
      weightDecay: {
        keys: ["weight_decay"],
        exact: "exact",
        note: cfg.lora
          ? "0: steerlm decays no LoRA matrix, and LoRA trains nothing else"
          : "not on biases and norms, as steerlm",
      },
      maxGradNorm: {
        keys: ["max_grad_norm"],
        exact: "exact",
        note: cfg.maxGradNorm === 0 ? "0: no clipping" : undefined,
      },
      beta1: { keys: ["adam_beta1"], exact: "exact" },
      beta2: { keys: ["adam_beta2"], exact: "exact" },
      eps: { keys: ["adam_epsilon"], exact: "exact" },
      seed: {
        keys: ["seed"],
        exact: "close",
        note: "seeds TRL's own data order and LoRA initialisation, not steerlm's",
      },
      evalEvery: val
        ? {
            keys: ["eval_strategy", "eval_steps"],
            exact: "close",
            note: "TRL evaluates at multiples of eval_steps; steerlm also at the last step",
          }
        : { keys: [], exact: "n/a", note: "no validation file" },
      evalBatches: val
        ? {
            keys: [],
            exact: "exact",
            note: "data/validation.jsonl holds the first evalBatches × batchSize validation conversations (0: all), and TRL evaluates all of it",
          }
        : { keys: [], exact: "n/a", note: "no validation file" },
      checkpointEvery: {
        keys: cfg.checkpointEvery > 0 ? ["save_strategy", "save_steps"] : ["save_strategy"],
        exact: "exact",
        note: "the script saves the final model in output/ either way",
      },
      keepCheckpoints:
        cfg.checkpointEvery > 0
          ? { keys: ["save_total_limit"], exact: "exact", note: "the newest ones" }
          : { keys: [], exact: "n/a", note: "no checkpoints during the run" },
    },
    fixed: [
      { keys: ["packing"], note: "one example per sequence, as steerlm" },
      {
        keys: ["completion_only_loss"],
        note: "loss on the completion only (TRL's default for prompt/completion data, made explicit)",
      },
      ...(turnIsToken
        ? [{ keys: ["eos_token"], note: "the completion already ends with it, so no extra EOS is trained" }]
        : []),
      ...(cfg.lora
        ? [{ keys: ["lora_dropout"], note: "steerlm's LoRA has no dropout (TRL's default is 0.05)" }]
        : []),
      { keys: ["report_to"], note: "no experiment tracker" },
    ],
    facts: [
      `${plan.train.length} conversations → ${train.length} training lines${val ? `, ${plan.val?.length} validation conversations → ${val.length} lines` : ""}.`,
      `${steps} optimiser updates of ${cfg.batchSize * cfg.gradAccum} sequences (max_steps).`,
    ],
    install: [`pip install "trl==1.9.0" "transformers>=5.5,<6" "accelerate==1.14.0" peft deepspeed`],
    launches: launchShapes(plan).map((s) => launch(plan, s)),
    bringBack: bringBack(plan),
    differences: [
      "Multi-turn conversations become one line per response, each with the earlier turns as its prompt: the loss tokens are steerlm's, the number of lines (so the steps an epoch takes) grows with the turns.",
      turnIsToken
        ? "The tokenizer has `<extra_id_1>`, so it is the EOS (`eos_token`) and TRL appends nothing to the completions."
        : `TRL appends the tokenizer's EOS to each completion and trains it too, after \`<extra_id_1>\`: set \`eos_token: "<extra_id_1>"\` in sft.yaml when the tokenizer has that token${control === null ? " (the job could not look at this model's tokenizer)" : ""}.`,
    ],
  };
}

/** The sft.yaml overrides of a launch size whose per-device batch differs from the file's. */
function batchFlags(plan: JobPlan, shape: Shape): string {
  const b = shape.batch;
  if (b === null || (b.perDevice === plan.cfg.batchSize && b.accumulation === plan.cfg.gradAccum)) return "";
  return ` --per_device_train_batch_size ${b.perDevice} --per_device_eval_batch_size ${b.perDevice} --gradient_accumulation_steps ${b.accumulation}`;
}

/** TRL reads `dataset_name: ./data` and writes `output/` relative to the working directory. */
const FROM_HERE = "From this folder (the data and output paths are relative to it).";

function launch(plan: JobPlan, shape: Shape): Launch {
  if (shape.batch === null) return unsplittable(plan, shape);
  if (shape.gpus * shape.nodes === 1) {
    return { title: shape.title, commands: ["trl sft --config sft.yaml"], note: FROM_HERE };
  }
  const base = `trl sft --config sft.yaml --accelerate_config accelerate/zero3.yaml${batchFlags(plan, shape)}`;
  if (shape.nodes === 1) {
    return {
      title: shape.title,
      commands: [base],
      note: `${FROM_HERE} DeepSpeed ZeRO-3; accelerate/fsdp2.yaml instead for PyTorch FSDP2. The flags after --accelerate_config keep the job's sequences per update.`,
    };
  }
  const machines = `--num_machines ${shape.nodes} --num_processes ${shape.nodes * shape.gpus}`;
  return {
    title: shape.title,
    note: FROM_HERE,
    commands: [
      "# on every machine, RANK 0 on the one at HEAD_IP:",
      `${base} ${machines} --machine_rank $RANK --main_process_ip $HEAD_IP --main_process_port 29500`,
      "# or with Slurm, one task per machine:",
      `srun --nodes=${shape.nodes} --ntasks-per-node=1 bash -c '${base} ${machines} --machine_rank $SLURM_NODEID --main_process_ip $HEAD_IP --main_process_port 29500'`,
    ],
  };
}

/** accelerate config files for one machine's GPUs (the multi-machine commands add the machine flags). */
function accelerateConfigs(plan: JobPlan): JobFile[] {
  const common = {
    compute_environment: "LOCAL_MACHINE",
    mixed_precision: plan.cfg.computeType === "bf16" ? "bf16" : "no",
    num_machines: 1,
    num_processes: plan.gpus,
    machine_rank: 0,
    main_training_function: "main",
    rdzv_backend: "static",
    same_network: true,
    use_cpu: false,
    downcast_bf16: "no",
  };
  const zero3 = {
    distributed_type: "DEEPSPEED",
    deepspeed_config: {
      deepspeed_multinode_launcher: "standard",
      offload_optimizer_device: "none",
      offload_param_device: "none",
      zero3_init_flag: true,
      // save_model gathers the whole model rather than writing shards
      zero3_save_16bit_model: true,
      zero_stage: 3,
    },
    ...common,
  };
  const fsdp2 = {
    distributed_type: "FSDP",
    fsdp_config: {
      fsdp_version: 2,
      fsdp_auto_wrap_policy: "TRANSFORMER_BASED_WRAP",
      fsdp_cpu_ram_efficient_loading: true,
      fsdp_offload_params: false,
      fsdp_reshard_after_forward: true,
      // one ordinary Hugging Face checkpoint at the end
      fsdp_state_dict_type: "FULL_STATE_DICT",
      fsdp_activation_checkpointing: false,
    },
    ...common,
  };
  const head = (what: string) => [`accelerate 1.14.0 config: ${what}, ${plan.gpus} GPUs on one machine`];
  return [
    { path: "accelerate/zero3.yaml", text: toYaml(zero3, head("DeepSpeed ZeRO-3")) },
    { path: "accelerate/fsdp2.yaml", text: toYaml(fsdp2, head("PyTorch FSDP2")) },
  ];
}

function bringBack(plan: JobPlan): string[] {
  if (!plan.cfg.lora) {
    return [
      "`output/` is a Hugging Face model directory (config.json, safetensors, tokenizer):",
      ["```sh", ...convertAndServe("output"), "```"].join("\n"),
    ];
  }
  return [
    "With LoRA, `output/` holds the adapter only (adapter_config.json, adapter_model.safetensors): merge it into its base first, then convert:",
    [
      "```sh",
      "python - <<'EOF'",
      "from peft import AutoPeftModelForCausalLM",
      "from transformers import AutoTokenizer",
      'AutoPeftModelForCausalLM.from_pretrained("output", dtype="float32").merge_and_unload().save_pretrained("merged")',
      'AutoTokenizer.from_pretrained("output").save_pretrained("merged")',
      "EOF",
      ...convertAndServe("merged"),
      "```",
    ].join("\n"),
  ];
}
