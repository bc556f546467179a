"""The tiny fixtures load with stock transformers and tokenize round-trip."""
from transformers import AutoModel, AutoTokenizer


def test_every_family_loads(tiny_models):
    for family, path in tiny_models.items():
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
        ids = tok("the king said unto", return_tensors="pt")
        assert model(**ids).last_hidden_state.shape[-1] == 32, family
        assert model.get_input_embeddings().weight.shape[0] == len(tok), family
