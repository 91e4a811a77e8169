"""Two-stream encoder (ViLBERT, LXMERT): a text stream and an image stream that meet only
through cross-attention and are never concatenated."""

from __future__ import annotations

from functools import partial
from typing import cast

from torch import Tensor, nn

from vlp.data.batch import Batch
from vlp.errors import VlpError
from vlp.layers.coattention import CoAttentionBlock, CrossAttentionLayer
from vlp.layers.embeddings import RegionEmbedding, TextEmbedding
from vlp.layers.packing import Packing
from vlp.layers.transformer import Pooler, TransformerEncoder, TransformerLayer
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import UnimodalOutput, VLOutput
from vlp.models.single_stream import init_bert_weights
from vlp.models.visual import RegionInput, VisualInput
from vlp.models.weights import load_partial


class TwoStreamModel(VLEncoder):
    """Text and image each run their own layers; cross-attention blocks exchange between them.

    ``text → text_encoder → blocks[*].text_layer`` and ``image → image_encoder →
    blocks[*].image_layer``, where each block first lets each stream attend to the other
    (keys masked by the other stream's padding).

    Args:
        text_embed: token ids → (B, L, D).
        visual_input: batch → visual tokens (B, R, Dv) and their mask.
        text_encoder: the text layers before the first exchange (ViLBERT's L−K, LXMERT's L).
        image_encoder: the image layers before the first exchange (LXMERT's R).
        blocks: the :class:`CoAttentionBlock` exchanges, in order.
        text_pooler: text states → pooled text (B, D).
        image_pooler: image states → pooled image (B, D); when given, the pair
            representation is pooled text ⊙ pooled image (ViLBERT), else the pooled text
            alone (LXMERT).
    """

    def __init__(self, text_embed: TextEmbedding, visual_input: VisualInput,
                 text_encoder: TransformerEncoder, image_encoder: TransformerEncoder,
                 blocks: list[CoAttentionBlock], text_pooler: Pooler,
                 image_pooler: Pooler | None) -> None:
        super().__init__()
        self.text_embed = text_embed
        self.visual_input = visual_input
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.blocks = nn.ModuleList(blocks)
        self.text_pooler = text_pooler
        self.image_pooler = image_pooler

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token embedding table (tied to the MLM decoder)."""
        return self.text_embed.word

    def _blocks(self) -> list[CoAttentionBlock]:
        return [cast(CoAttentionBlock, b) for b in self.blocks]

    def load_text_weights(self, state: dict[str, Tensor], source: str = "text weights"
                          ) -> list[str]:
        """Initialise the text stream (embedding, every text layer, pooler) from BERT.

        ViLBERT's recipe: the text stream starts from BERT; the image stream and the
        cross-attention start fresh. BERT layer ``i`` fills the ``i``-th text layer,
        counting the plain layers first and then the one in each exchange block.

        Args:
            state: weights under single-stream names (:func:`vlp.convert.bert.
                bert_text_state`): ``text_embed.*``, ``encoder.layers.{i}.*``,
                ``pooler.dense.*``.
            source: where they came from, for error messages.

        Returns:
            The names of parameters left as they were.
        """
        plain = len(self.text_encoder.layers)
        total = plain + len(self.blocks)
        renamed = {}
        for key, value in state.items():
            if key.startswith("pooler."):
                key = "text_" + key
            elif key.startswith("encoder.layers."):
                index, rest = key.removeprefix("encoder.layers.").split(".", 1)
                i = int(index)
                if i >= total:
                    raise VlpError(f"{source}: text layer {i} has no place; the text stream "
                                   f"has {total} layers (model.num_layers)")
                key = (f"text_encoder.layers.{i}.{rest}" if i < plain
                       else f"blocks.{i - plain}.text_layer.{rest}")
            renamed[key] = value
        return load_partial(self, renamed, source)

    def encode_text(self, batch: Batch) -> Tensor:
        """The text stream alone, every text layer, cross-attention skipped: (B, L, D).

        With the text layers started from BERT, this is BERT.
        """
        p = Packing(batch.text_mask, batch.counts.get("text"))
        x = self.text_encoder.forward_packed(p.pack(self.text_embed(batch.input_ids)), p)
        for block in self._blocks():
            x = block.text_layer(x, packing=p)
        return p.unpack(x)

    def encode_image(self, batch: Batch) -> Tensor:
        """The image stream alone, every image layer, cross-attention skipped: (B, R, Dv)."""
        return self._image_alone(batch)[0]

    def _image_alone(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """:meth:`encode_image` and the regions' mask (B, R)."""
        visual = self.visual_input.embed(batch)
        p = Packing(visual.mask, visual.count)
        x = self.image_encoder.forward_packed(p.pack(visual.tokens), p)
        for block in self._blocks():
            x = block.image_layer(x, packing=p)
        return p.unpack(x), visual.mask

    def encode_unimodal(self, batch: Batch) -> UnimodalOutput:
        """Each stream alone (what contrastive objectives compare)."""
        image, image_mask = self._image_alone(batch)
        return UnimodalOutput(text=self.encode_text(batch), image=image,
                              text_mask=batch.text_mask, image_mask=image_mask)

    def forward(self, batch: Batch) -> VLOutput:
        """Joint encoding of the batch's text and image; every layer runs on the real
        positions only (:mod:`vlp.layers.packing`), padded ones come out as zeros."""
        text_mask = batch.text_mask  # (B, L)
        visual = self.visual_input.embed(batch)
        image, image_mask = visual.tokens, visual.mask  # (B, R, Dv), (B, R)
        text = self.text_embed(batch.input_ids)  # (B, L, D)
        tp = Packing(text_mask, batch.counts.get("text"))
        ip = Packing(image_mask, visual.count)
        t = self.text_encoder.forward_packed(tp.pack(text), tp)  # (T, D)
        v = self.image_encoder.forward_packed(ip.pack(image), ip)  # (T', Dv)
        for block in self._blocks():
            t, v = block.forward_packed(t, tp, v, ip)
        text, image = tp.unpack(t), ip.unpack(v)  # (B, L, D), (B, R, Dv)
        pooled_text = self.text_pooler(text, text_mask)  # (B, D)
        pooled_image = None
        pooled = pooled_text
        if self.image_pooler is not None:
            pooled_image = self.image_pooler(image, image_mask)  # (B, D)
            pooled = pooled_text * pooled_image
        return VLOutput(text=text, image=image, text_mask=text_mask, image_mask=image_mask,
                        pooled=pooled, pooled_text=pooled_text, pooled_image=pooled_image)


def _check(cfg: ModelConfig) -> None:
    """Fail early, naming the field, on a two-stream layout that cannot be built."""
    k = cfg.num_cross_layers
    if cfg.visual != "regions" or cfg.norm_first or cfg.modality_embed:
        raise VlpError("model.arch: two_stream runs on detector regions with post-LayerNorm "
                       "layers (visual: regions, norm_first: false, modality_embed: false)")
    if k < 1:
        raise VlpError("model.num_cross_layers: a two-stream model needs at least 1 "
                       f"cross-attention block, got {k}")
    for name in ("num_layers", "num_image_layers"):
        if getattr(cfg, name) < k:
            raise VlpError(f"model.{name}: {getattr(cfg, name)} layers in all, but each of the "
                           f"{k} cross blocks (model.num_cross_layers) holds one")
    heads = cfg.image_num_heads or cfg.num_heads
    if cfg.image_width % heads:
        raise VlpError(f"model.image_num_heads: {heads} heads do not divide the image width "
                       f"{cfg.image_width}")
    if cfg.cross_attention == "shared" and (cfg.image_width, heads) != (cfg.hidden_size,
                                                                         cfg.num_heads):
        raise VlpError("model.cross_attention: 'shared' needs the image stream as wide as the "
                       "text stream, with as many heads (image_hidden_size, image_num_heads)")
    if cfg.region_embed not in ("uniter", "lxmert"):
        raise VlpError(f"model.region_embed: a two-stream model embeds regions as 'uniter' or "
                       f"'lxmert', not {cfg.region_embed!r}")


def _cross(cfg: ModelConfig, dim: int, heads: int, mlp: int, context: int) -> nn.Module:
    """One direction's cross-attention: ViLBERT's carries an MLP, LXMERT's does not."""
    if cfg.cross_block == "vilbert":
        return TransformerLayer(dim, heads, mlp, cfg.dropout, cross_dim=context,
                                eps=cfg.layer_norm_eps)
    return CrossAttentionLayer(dim, heads, context, cfg.dropout, cfg.layer_norm_eps)


def _block(cfg: ModelConfig) -> CoAttentionBlock:
    d, dv = cfg.hidden_size, cfg.image_width
    heads, mlp = cfg.num_heads, cfg.intermediate_size
    v_heads = cfg.image_num_heads or heads
    v_mlp = cfg.image_intermediate_size or mlp
    text_cross = _cross(cfg, d, heads, mlp, context=dv)
    image_cross = (None if cfg.cross_attention == "shared"
                   else _cross(cfg, dv, v_heads, v_mlp, context=d))
    return CoAttentionBlock(
        text_cross, image_cross,
        TransformerLayer(d, heads, mlp, cfg.dropout, eps=cfg.layer_norm_eps),
        TransformerLayer(dv, v_heads, v_mlp, cfg.dropout, eps=cfg.layer_norm_eps),
    )


def build_two_stream(cfg: ModelConfig) -> TwoStreamModel:
    """ViLBERT- or LXMERT-style two-stream model on detector regions (see
    :class:`ModelConfig` for the two-stream fields)."""
    _check(cfg)
    d, dv, k = cfg.hidden_size, cfg.image_width, cfg.num_cross_layers
    text = TextEmbedding(cfg.vocab_size, d, cfg.max_positions, cfg.type_vocab_size,
                         cfg.dropout, cfg.pad_id, cfg.layer_norm_eps)
    regions = RegionEmbedding(cfg.region_feature_dim, cfg.loc_dim, dv, cfg.dropout,
                              eps=cfg.layer_norm_eps,
                              style="lxmert" if cfg.region_embed == "lxmert" else "uniter")
    text_encoder = TransformerEncoder(d, cfg.num_layers - k, cfg.num_heads,
                                      cfg.intermediate_size, cfg.dropout, cfg.layer_norm_eps)
    image_encoder = TransformerEncoder(dv, cfg.num_image_layers - k,
                                       cfg.image_num_heads or cfg.num_heads,
                                       cfg.image_intermediate_size or cfg.intermediate_size,
                                       cfg.dropout, cfg.layer_norm_eps)
    # regions carry no summary token, so the image stream is pooled by its mean
    image_pooler = Pooler(dv, "mean", out_dim=d) if cfg.pooled == "product" else None
    model = TwoStreamModel(text, RegionInput(regions), text_encoder, image_encoder,
                           [_block(cfg) for _ in range(k)],
                           Pooler(d, "mean" if cfg.pooler == "product" else cfg.pooler),
                           image_pooler)
    model.apply(partial(init_bert_weights, std=cfg.initializer_range))
    return model
