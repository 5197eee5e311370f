"""The trial collector behind experiments/collect_qlora_trials.py: space-filling real QLoRA
trials, each fully determined by its index, appended to a JSON Lines file.

``plan`` says which trial an index is, ``data_file`` how the file is written and resumed,
``loop`` runs the trials and stops cleanly on a signal.
"""
