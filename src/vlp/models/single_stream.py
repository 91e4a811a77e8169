"""Single-stream encoder (UNITER, VisualBERT, ViLT, SOHO): one transformer over text + image."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.layers.backbones import Backbone, build_backbone
from vlp.layers.embeddings import (
    IMAGE_TYPE,
    TEXT_TYPE,
    PatchEmbedding,
    RegionEmbedding,
    TextEmbedding,
    VisualBertRegionEmbedding,
)
from vlp.layers.transformer import Pooler, TransformerEncoder
from vlp.layers.visual_dictionary import VisualDictionary
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import UnimodalOutput, VLOutput
from vlp.models.visual import GridInput, PatchInput, RegionInput, VisualInput, VisualTokens
from vlp.models.weights import load_partial


class SingleStreamModel(VLEncoder):
    """Text tokens and visual tokens concatenated into one transformer.

    Args:
        text_embed: token ids → (B, L, D).
        visual_input: batch → visual tokens (B, R, D), their mask and, for a grid with a
            visual dictionary, its indices and MVM mask (carried into :class:`VLOutput`).
        encoder: the shared transformer.
        pooler: [CLS] (or mean) state → pooled pair representation; with
            ``image_pooler``, the mean of the text states → pooled text.
        image_pooler: when given, mean of the image states → pooled image, and the pair is
            pooled text ⊙ pooled image (``model.pooler: product``): a bilinear text-image
            term from the first step, as ViLBERT's alignment head and contrastive losses
            have, where a [CLS] head must first learn cross-modal attention to see one.
        modality: when given, row 0 is added to every text token and row 1 to every
            visual token after their embedders (ViLT's modality type embeddings).
    """

    def __init__(self, text_embed: TextEmbedding, visual_input: VisualInput,
                 encoder: TransformerEncoder, pooler: Pooler,
                 image_pooler: Pooler | None = None,
                 modality: nn.Embedding | None = None) -> None:
        super().__init__()
        self.text_embed = text_embed
        self.visual_input = visual_input
        self.encoder = encoder
        self.pooler = pooler
        self.image_pooler = image_pooler
        self.modality = modality

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token embedding table (tied to the MLM decoder)."""
        return self.text_embed.word

    def load_text_weights(self, state: dict[str, Tensor], source: str = "text weights"
                          ) -> list[str]:
        """Initialise the text embedding, the transformer and the pooler from BERT.

        UNITER's recipe: the whole single-stream transformer starts from BERT; only the
        region embedding starts fresh.

        Args:
            state: weights under single-stream names (:func:`vlp.convert.bert.
                bert_text_state`).
            source: where they came from, for error messages.

        Returns:
            The names of parameters left as they were.
        """
        return load_partial(self, state, source)

    def embed_text(self, batch: Batch) -> Tensor:
        """Text tokens, embedded: (B, L, D)."""
        text = self.text_embed(batch.input_ids)
        return text if self.modality is None else text + self.modality.weight[TEXT_TYPE]

    def embed_visual(self, batch: Batch) -> VisualTokens:
        """Visual tokens, embedded (B, R, D), with their mask and dictionary fields."""
        visual = self.visual_input.embed(batch)
        if self.modality is not None:
            visual.tokens = visual.tokens + self.modality.weight[IMAGE_TYPE]
        return visual

    def encode_text(self, batch: Batch) -> Tensor:
        """Text alone through the transformer: (B, L, D)."""
        return self.encoder(self.embed_text(batch), batch.text_mask, batch.counts.get("text"))

    def encode_image(self, batch: Batch) -> Tensor:
        """Visual tokens alone through the transformer: (B, R, D)."""
        visual = self.embed_visual(batch)
        return self.encoder(visual.tokens, visual.mask, visual.count)

    def encode_unimodal(self, batch: Batch) -> UnimodalOutput:
        """Text and image each through the shared transformer alone (ALBEF's "align
        before fuse": the same weights serve the contrastive and the joint passes)."""
        visual = self.embed_visual(batch)
        return UnimodalOutput(
            text=self.encode_text(batch),
            image=self.encoder(visual.tokens, visual.mask, visual.count),
            text_mask=batch.text_mask, image_mask=visual.mask)

    def forward(self, batch: Batch) -> VLOutput:
        """Joint encoding of the batch's text and image."""
        text = self.embed_text(batch)  # (B, L, D)
        visual = self.embed_visual(batch)
        image, image_mask = visual.tokens, visual.mask  # (B, R, D), (B, R)
        vd = {"vd_indices": visual.vd_indices, "vd_masked": visual.vd_masked}
        x = torch.cat([text, image], dim=1)  # (B, L + R, D)
        mask = torch.cat([batch.text_mask, image_mask], dim=1)  # (B, L + R)
        n_real = batch.counts.get("text")
        x = self.encoder(x, mask, None if n_real is None or visual.count is None
                         else n_real + visual.count)
        n_text = text.shape[1]
        text, image = x[:, :n_text], x[:, n_text:]
        if self.image_pooler is None:
            return VLOutput(text=text, image=image, text_mask=batch.text_mask,
                            image_mask=image_mask, pooled=self.pooler(x, mask), **vd)
        pooled_text = self.pooler(text, batch.text_mask)  # (B, D)
        pooled_image = self.image_pooler(image, image_mask)  # (B, D)
        return VLOutput(text=text, image=image, text_mask=batch.text_mask,
                        image_mask=image_mask, pooled=pooled_text * pooled_image,
                        pooled_text=pooled_text, pooled_image=pooled_image, **vd)


def build_single_stream(cfg: ModelConfig) -> SingleStreamModel:
    """Single-stream model on detector regions, embedded as UNITER or VisualBERT does
    (``cfg.region_embed``), on image patches as ViLT (``cfg.visual: patches``) or on a CNN
    grid with a visual dictionary as SOHO (``cfg.visual: grid``)."""
    d = cfg.hidden_size
    text = TextEmbedding(cfg.vocab_size, d, cfg.max_positions, cfg.type_vocab_size,
                         cfg.dropout, cfg.pad_id, cfg.layer_norm_eps)
    visual: VisualInput
    if cfg.visual == "grid":
        visual = build_grid_input(cfg)
    elif cfg.visual == "patches":
        visual = PatchInput(PatchEmbedding(cfg.image_size, cfg.patch_size, cfg.num_channels,
                                           d, cfg.dropout))
    elif cfg.region_embed == "visualbert":
        visual = RegionInput(VisualBertRegionEmbedding(
            cfg.region_feature_dim, d, text.norm, cfg.dropout, cfg.type_vocab_size,
            cfg.max_positions))
    else:
        visual = RegionInput(RegionEmbedding(
            cfg.region_feature_dim, cfg.loc_dim, d, cfg.dropout, type_embedding=text.token_type,
            eps=cfg.layer_norm_eps, style="lxmert" if cfg.region_embed == "lxmert" else "uniter"))
    encoder = TransformerEncoder(d, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
                                 cfg.dropout, cfg.layer_norm_eps, norm_first=cfg.norm_first)
    if cfg.pooler == "product":
        pooler, image_pooler = Pooler(d, "mean"), Pooler(d, "mean")
    else:
        pooler, image_pooler = Pooler(d, cfg.pooler), None
    modality = nn.Embedding(2, d) if cfg.modality_embed else None
    model = SingleStreamModel(text, visual, encoder, pooler, image_pooler, modality)
    model.apply(partial(init_bert_weights, std=cfg.initializer_range))
    return model


def build_grid_input(cfg: ModelConfig, backbone: Backbone | None = None) -> GridInput:
    """SOHO's visual input: ``cfg.backbone``, a 1×1 conv and a 2×2 max-pool, with a visual
    dictionary of ``cfg.vd_size`` entries (none when 0); positions laid out for the grid
    of a ``cfg.image_size`` image.

    Args:
        cfg: the model config.
        backbone: the CNN, when it comes with weights (built by ``cfg.backbone`` with
            random weights otherwise); the input's other parts are initialised as BERT's.
    """
    if backbone is None:
        backbone = build_backbone(cfg.backbone)
    grid = math.ceil(math.ceil(cfg.image_size / backbone.stride) / 2)
    dictionary = (VisualDictionary(cfg.vd_size, cfg.hidden_size, cfg.vd_momentum)
                  if cfg.vd_size > 0 else None)
    grid_input = GridInput(backbone, cfg.hidden_size, grid, cfg.num_channels, cfg.dropout,
                           cfg.layer_norm_eps, dictionary)
    for child in grid_input.children():
        if child is not backbone:
            child.apply(partial(init_bert_weights, std=cfg.initializer_range))
    return grid_input


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorm.

    BERT's 0.02 suits 768-wide models started from a checkpoint; narrow models trained
    from scratch need a larger ``std`` for the modalities to mix early. On the world, a
    256-wide UNITER's [CLS] ITM stays at chance for thousands of steps with 0.02 and
    leaves it after about 500 with 0.05 (and no dropout); 0.04 and 0.0625 were slower.
    """
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, PatchEmbedding):  # ViT: small normal [CLS] and positions
        nn.init.normal_(module.cls, std=std)
        nn.init.normal_(module.position, std=std)
