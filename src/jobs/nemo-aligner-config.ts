import { CONTROL_TOKENS } from "../data/template.js";
import { type JobPlan, times } from "./plan.js";
import { float, type YamlValue } from "./yaml.js";

/**
 * NeMo-Aligner 0.7.0's examples/nlp/gpt/conf/gpt_sft.yaml, complete, with steerlm's values: the job's file
 * replaces the shipped one (Hydra's --config-name), so every key of the shipped file is here. A key keeps
 * the shipped value unless a steerlm setting or NeMo-Aligner's SteerLM guide gives another (the README
 * lists those); the shipped interpolations are written out.
 */

export interface AlignerValues {
  steps: number;
  epochs: number;
  /** model.restore_from_path */
  model: string;
  /** NeMo's fused LoRA modules; empty without LoRA. */
  modules: string[];
}

export function gptSftConfig(
  plan: JobPlan,
  { steps, epochs, model, modules }: AlignerValues,
): {
  [key: string]: YamlValue;
} {
  const { cfg } = plan;
  const global = cfg.batchSize * cfg.gradAccum;
  const valEvery = cfg.evalEvery > 0 ? cfg.evalEvery : steps;
  const dataset = (path: string, train: boolean): { [key: string]: YamlValue } => ({
    file_path: path,
    global_batch_size: global,
    micro_batch_size: cfg.batchSize,
    shuffle: train,
    memmap_workers: null,
    max_seq_length: cfg.seqLen,
    min_seq_length: 1,
    drop_last: true,
    label_key: "output",
    add_eos: false,
    add_sep: false,
    add_bos: false,
    truncation_field: "input",
    index_mapping_dir: null,
    prompt_template: "{input} {output}",
    hf_dataset: true,
    truncation_method: "right",
    ...(train ? {} : { output_original_text: true }),
  });
  return {
    name: "megatron_gpt_sft",
    trainer: {
      num_nodes: 1,
      devices: 1,
      accelerator: "gpu",
      precision: cfg.computeType === "bf16" ? "bf16" : 32,
      gradient_clip_val: cfg.maxGradNorm,
      sft: {
        max_epochs: epochs,
        max_steps: steps,
        val_check_interval: valEvery,
        save_interval: cfg.checkpointEvery > 0 ? cfg.checkpointEvery : steps,
        limit_train_batches: float(1),
        limit_val_batches: float(1),
        gradient_clip_val: cfg.maxGradNorm,
      },
      logger: false,
      enable_checkpointing: false,
      use_distributed_sampler: false,
      max_time: null,
      max_epochs: epochs,
      max_steps: steps,
    },
    exp_manager: {
      explicit_log_dir: "results",
      exp_dir: null,
      name: "megatron_gpt_sft",
      create_wandb_logger: false,
      wandb_logger_kwargs: { project: null, name: null },
      resume_if_exists: true,
      resume_ignore_no_checkpoint: true,
      create_checkpoint_callback: true,
      checkpoint_callback_params: {
        monitor: "val_loss",
        save_top_k: cfg.keepCheckpoints,
        mode: "min",
        save_nemo_on_train_end: true,
        filename: "megatron_gpt_sft--{val_loss:.3f}-{step}-{consumed_samples}-{epoch}",
        model_parallel_size: 1,
        save_best_model: false,
      },
    },
    model: {
      seed: cfg.seed,
      tensor_model_parallel_size: 1,
      pipeline_model_parallel_size: 1,
      context_parallel_size: 1,
      restore_from_path: model,
      resume_from_checkpoint: null,
      save_nemo_on_validation_end: true,
      sync_batch_comm: false,
      megatron_amp_O2: false,
      encoder_seq_length: 4096,
      sequence_parallel: false,
      activations_checkpoint_granularity: null,
      activations_checkpoint_method: null,
      activations_checkpoint_num_layers: null,
      activations_checkpoint_layers_per_pipeline: null,
      answer_only_loss: false,
      gradient_as_bucket_view: false,
      seq_len_interpolation_factor: null,
      use_flash_attention: null,
      hidden_dropout: float(0),
      attention_dropout: float(0),
      ffn_dropout: float(0),
      global_batch_size: global,
      micro_batch_size: cfg.batchSize,
      steerlm2: { forward_micro_batch_size: 1, micro_batch_size: 1 },
      peft: {
        peft_scheme: cfg.lora ? "lora" : "none",
        restore_from_path: null,
        lora_tuning: {
          target_modules: cfg.lora ? modules : ["attention_qkv"],
          adapter_dim: cfg.lora ? cfg.loraRank : 32,
          ...(cfg.lora ? { alpha: cfg.loraAlpha } : {}),
          adapter_dropout: float(0),
          column_init_method: "xavier",
          row_init_method: "zero",
          layer_selection: null,
          weight_tying: false,
          position_embedding_strategy: null,
        },
      },
      data: {
        chat: true,
        chat_prompt_tokens: {
          system_turn_start: CONTROL_TOKENS.system,
          turn_start: CONTROL_TOKENS.turn,
          label_start: CONTROL_TOKENS.label,
          end_of_turn: "\n",
          end_of_name: "\n",
        },
        sample: false,
        num_workers: 0,
        train_ds: dataset("data/train.jsonl", true),
        validation_ds: dataset("data/validation.jsonl", false),
      },
      optim: {
        name: "distributed_fused_adam",
        lr: cfg.lr,
        weight_decay: cfg.weightDecay,
        betas: [cfg.beta1, cfg.beta2],
        sched: {
          name: "CosineAnnealing",
          warmup_steps: cfg.warmupSteps - 1,
          constant_steps: 0,
          min_lr: times(cfg.lr, cfg.minLrRatio),
          max_steps: steps - 1,
        },
      },
    },
  };
}
