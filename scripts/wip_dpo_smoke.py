import json, sys, torch
sys.path.insert(0, "/work/main")
from pathlib import Path
from transformers import AutoTokenizer, AutoModelForCausalLM
from trl import DPOConfig
from evalsuite.training.data import DatasetSpec
from evalsuite.training.preference import prepare_preferences
from evalsuite.training.dpo_trainer import EvalsuiteDPOTrainer
m = "/tmp/scratch/ddp/m"
tok = AutoTokenizer.from_pretrained(m)
d = Path("/tmp/scratch/pref")
rows = [{"prompt": f"Is {i} even?", "chosen": "yes" if i % 2 == 0 else "no", "rejected": "no" if i % 2 == 0 else "yes"} for i in range(16)]
(d/"q.jsonl").write_text("".join(json.dumps(r)+"\n" for r in rows))
prep = prepare_preferences(DatasetSpec(path=str(d/"q.jsonl")), tok, "chat_template", 128)
model = AutoModelForCausalLM.from_pretrained(m)
ref = AutoModelForCausalLM.from_pretrained(m)
ref_before = {k: v.clone() for k, v in ref.state_dict().items()}
args = DPOConfig(output_dir="/tmp/scratch/dpo_out", report_to="none", max_steps=8, per_device_train_batch_size=8, learning_rate=1e-3,
                 logging_steps=1, save_strategy="no", bf16=False, use_cpu=True, gradient_checkpointing=False, dataloader_pin_memory=False)
tr = EvalsuiteDPOTrainer(model, ref_model=ref, args=args, train_dataset=prep.to_dataset(), processing_class=tok)
tr.train()
margins = [h["rewards/margins"] for h in tr.state.log_history if "rewards/margins" in h]
print("margins", [round(x, 4) for x in margins])
print("ref unchanged", all(torch.equal(ref_before[k], v) for k, v in ref.state_dict().items()))
