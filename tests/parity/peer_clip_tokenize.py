"""In the peers venv: token ids of transformers' pure-Python (slow) CLIPTokenizer for the full CLIP
vocabulary built from the open-clip-torch wheel's BPE file. Usage: peer_clip_tokenize.py DIR PROMPTS.json OUT.json"""
import json
import sys

from transformers import CLIPTokenizer

folder, prompts, out = sys.argv[1:4]
tok = CLIPTokenizer(f"{folder}/vocab.json", f"{folder}/merges.txt", model_max_length=77)
ids = [tok(p, padding="max_length", truncation=True, max_length=77)["input_ids"] for p in json.load(open(prompts))]
json.dump(ids, open(out, "w"))
