"""The Lightning and Hugging Face adapters of la.Recorder: each records the module its trainer
trains, and the store's last snapshot is the trained weights."""

import numpy as np
import torch

import lossatlas as la
from tests.helpers import blobs, mlp

torch.set_num_threads(1)


def test_a_lightning_module_fitted_on_the_cpu_is_recorded(tmp_path):
    import lightning.pytorch as L  # in the dev extra: a missing package fails, not skips
    from lossatlas.integrations.lightning import LossAtlasCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(seed=0)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    X, y = blobs(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    module = Module()
    cb = LossAtlasCallback(tmp_path / "run", every_steps=3)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    t = la.RunDir(tmp_path / "run").open("trajectory")
    final = la.ParamSpace(module).vector(module).numpy()
    assert np.array_equal(t.weights.values[-1], final)
    assert t.step.values.tolist() == [0, 3, 4, 6, 8]  # every 3 steps and each epoch's end (4 steps each)
    assert np.isfinite(t.loss.values[1:]).all() and np.all(t.lr.values[1:] == 0.1)
    assert np.isfinite(t.train_loss.values[[2, 4]]).all()  # the epoch's logged mean at its end
    assert not np.array_equal(t.weights.values[0], final)


def test_a_tiny_bert_trained_by_the_transformers_trainer_is_recorded(tmp_path):
    import transformers
    from lossatlas.integrations.huggingface import LossAtlasCallback

    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    with torch.random.fork_rng():  # transformers initializes from the global generator
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (24, 8), generator=gen)
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": int(ids[i, 0] % 2)}
            for i in range(24)]
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), use_cpu=True, report_to=[],
                                          per_device_train_batch_size=8, num_train_epochs=2, logging_steps=2,
                                          save_strategy="no", disable_tqdm=True, learning_rate=1e-3, seed=0)
    cb = LossAtlasCallback(tmp_path / "run", every_steps=2)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb])
    with torch.random.fork_rng():  # the Trainer seeds the global generators with args.seed
        trainer.train()
    t = la.RunDir(tmp_path / "run").open("trajectory")
    final = la.ParamSpace(trainer.model).vector(trainer.model).numpy()
    assert np.array_equal(t.weights.values[-1], final)
    assert t.step.values.tolist() == [0, 2, 3, 4, 6]  # 3 steps an epoch
    assert np.isfinite(t.loss.values[[1, 3]]).all()  # logged every 2 steps, with the step's snapshot
    assert t.sizes["param"] == sum(p.numel() for p in trainer.model.parameters())
