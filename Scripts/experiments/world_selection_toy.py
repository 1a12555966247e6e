"""How fast can one cross-attention layer learn the built-in world's questions, with no language model?

A diagnosis for issue 12's accuracy target (Docs/training.md, "The built-in world: what learns and
what does not"). The question is read as a bag of learned word embeddings (an ideal query: every
word of the question, nothing lost), one cross-attention layer (width 64, 4 heads) reads the image
tokens, and a linear layer picks the answer among the world's answer strings (an ideal read-out).
Only the image tokens differ between modes:

  --image-tokens symbolic   one token per grid cell: learned embeddings of the object's shape,
                            colour and size (or "empty") plus a learned cell embedding
  --image-tokens pixels     the PNGs through a small ViT like the main job's encoder (conv patches,
                            class token, position embeddings, 2 pre-norm layers of width 64)
  --pretrain-encoder N      first N steps training that ViT alone to name, on every patch, the
                            shape, colour, size, row and column of the object covering its centre
  --freeze-encoder          then keep it fixed while the reader trains
  --query-llama DIR         the question read by a frozen Llama (its hidden state after
                            --query-layer layers at the answer position) instead of a bag of words
  --encoder-learning-rate R or train it at rate R
  --reader transformer      instead of one cross-attention read of a bag of words, a small
                            transformer trained from scratch on the question's words in order:
                            --layers blocks of self-attention, cross-attention to the image tokens
                            and an MLP (an upper bound for a frozen Llama with adapters: nothing
                            is frozen), answer read at the last word

    vlm data synth --out w64 --scenes 20000 --heldout 1000
    python3 Scripts/experiments/world_selection_toy.py --world w64 --types position --image-tokens symbolic
    python3 Scripts/experiments/world_selection_toy.py --world w64 --types position --steps 12000 --threads 1
    python3 Scripts/experiments/world_selection_toy.py --world w64 --types position --pretrain-encoder 6000 --steps 2000

Needs torch, numpy and pillow; not used by the tests.
"""
import argparse, json, re

import numpy as np
import torch
from PIL import Image

from pretrain_world_encoder import SHAPES, SIZES, patch_labels   # the same folder
WIDTH = 64


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world", required=True, help="a folder written by vlm data synth")
    parser.add_argument("--types", default="position", help="question types, comma-separated, or all")
    parser.add_argument("--image-tokens", choices=["symbolic", "pixels"], default="pixels")
    parser.add_argument("--patch", type=int, default=8, help="the ViT's patch size in pixels")
    parser.add_argument("--pretrain-encoder", type=int, default=0, metavar="STEPS")
    parser.add_argument("--freeze-encoder", action="store_true", help="keep the pretrained ViT fixed while the reader trains")
    parser.add_argument("--encoder-learning-rate", type=float, help="the ViT's rate while the reader trains (default: --learning-rate)")
    parser.add_argument("--query-llama", metavar="DIR", help="read the question with this frozen Llama checkpoint instead of a bag of words")
    parser.add_argument("--query-layer", type=int, default=4, help="its hidden state after this many layers, at the answer position")
    parser.add_argument("--reader", choices=["bag", "transformer"], default="bag")
    parser.add_argument("--layers", type=int, default=4, help="the transformer reader's blocks")
    parser.add_argument("--width", type=int, default=WIDTH, help="the reader's and tokens' width")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch's thread count (the figures in Docs used 1)")
    return parser.parse_args()


def words(text):
    return re.findall(r"[a-z]+", text.lower())


class World:
    """The questions of the chosen types, their scenes and images, as tensors."""

    def __init__(self, root, types):
        record = json.load(open(f"{root}/world.json"))
        self.colors = list(record["colors"])
        self.scenes = {scene["image"]: scene for scene in record["scenes"]}
        self.root = root
        self.pixel_cache = {}

        def questions(split):
            rows = [json.loads(line) for line in open(f"{root}/qa-{split}.jsonl")]
            return [row for row in rows if types == "all" or row["type"] in types.split(",")]

        self.train, self.heldout = questions("train"), questions("heldout")
        self.vocabulary, self.answers = {}, {}
        for row in self.train + self.heldout:
            for word in words(row["question"]):
                self.vocabulary.setdefault(word, len(self.vocabulary))
            self.answers.setdefault(row["answer"], len(self.answers))

    def pixels(self, path):
        if path not in self.pixel_cache:
            array = np.array(Image.open(f"{self.root}/{path}").convert("RGB"))
            self.pixel_cache[path] = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        return self.pixel_cache[path]

    def cells(self, path):
        """Per grid cell: shape, colour, size indices (the last index of each means empty)."""
        cells = torch.tensor([[len(SHAPES), len(self.colors), len(SIZES)]] * 9)
        for item in self.scenes[path]["objects"]:
            cells[item["row"] * 3 + item["column"]] = torch.tensor(
                [SHAPES.index(item["shape"]), self.colors.index(item["color"]), SIZES.index(item["size"])])
        return cells

    def tensors(self, rows, symbolic, right_aligned=False):
        images = torch.stack([(self.cells if symbolic else self.pixels)(row["image"]) for row in rows])
        length = max(len(words(row["question"])) for row in rows)
        query = torch.full((len(rows), length), len(self.vocabulary))
        for index, row in enumerate(rows):
            ids = [self.vocabulary[word] for word in words(row["question"])]
            if right_aligned:
                query[index, length - len(ids):] = torch.tensor(ids)
            else:
                query[index, : len(ids)] = torch.tensor(ids)
        return images, query, torch.tensor([self.answers[row["answer"]] for row in rows])


class SymbolicTokens(torch.nn.Module):
    def __init__(self, colors):
        super().__init__()
        self.shape = torch.nn.Embedding(len(SHAPES) + 1, WIDTH)
        self.color = torch.nn.Embedding(colors + 1, WIDTH)
        self.size = torch.nn.Embedding(len(SIZES) + 1, WIDTH)
        self.cell = torch.nn.Embedding(9, WIDTH)

    def forward(self, cells):
        return self.shape(cells[..., 0]) + self.color(cells[..., 1]) + self.size(cells[..., 2]) + self.cell.weight


class PixelEncoder(torch.nn.Module):
    def __init__(self, image_size, patch):
        super().__init__()
        self.patches = (image_size // patch) ** 2
        self.embed = torch.nn.Conv2d(3, WIDTH, patch, patch, bias=False)
        self.class_token = torch.nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02)
        self.position = torch.nn.Parameter(torch.randn(1, self.patches + 1, WIDTH) * 0.02)
        self.pre_norm, self.post_norm = torch.nn.LayerNorm(WIDTH), torch.nn.LayerNorm(WIDTH)
        self.layers = torch.nn.ModuleList(
            torch.nn.TransformerEncoderLayer(WIDTH, 4, 2 * WIDTH, 0.0, "gelu", batch_first=True, norm_first=True)
            for _ in range(2))

    def forward(self, pixels):
        x = self.embed((pixels.float() / 255 - 0.5) / 0.25).flatten(2).transpose(1, 2)
        x = self.pre_norm(torch.cat([self.class_token.expand(len(x), -1, -1), x], 1) + self.position)
        for layer in self.layers:
            x = layer(x)
        return self.post_norm(x)


class Reader(torch.nn.Module):
    def __init__(self, tokens, vocabulary, answers, llama_width=None):
        super().__init__()
        self.tokens = tokens
        self.words = torch.nn.Embedding(vocabulary + 1, WIDTH, padding_idx=vocabulary)
        self.attention = torch.nn.MultiheadAttention(WIDTH, 4, batch_first=True)
        self.from_llama = None if llama_width is None else torch.nn.Linear(llama_width, WIDTH)
        self.answer = torch.nn.Linear(WIDTH, answers)

    def forward(self, images, query):
        tokens = self.tokens(images)
        asked = self.words(query).sum(1, keepdim=True) if self.from_llama is None else self.from_llama(query)[:, None]
        read, _ = self.attention(asked, tokens, tokens)
        return self.answer(read[:, 0])


class TransformerReader(torch.nn.Module):
    """Words in order through pre-norm blocks of causal self-attention, cross-attention to the image
    tokens and an MLP; the answer is read from the last word's state."""

    def __init__(self, tokens, vocabulary, answers, layers, length=32):
        super().__init__()
        self.tokens = tokens
        self.words = torch.nn.Embedding(vocabulary + 1, WIDTH)
        self.position = torch.nn.Parameter(torch.randn(length, WIDTH) * 0.02)
        self.blocks = torch.nn.ModuleList(torch.nn.TransformerDecoderLayer(
            WIDTH, 4, 4 * WIDTH, 0.0, "gelu", batch_first=True, norm_first=True) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(WIDTH)
        self.answer = torch.nn.Linear(WIDTH, answers)

    def forward(self, images, query):
        memory = self.tokens(images)
        # Right-aligned question words so the last position is always the last word.
        x = self.words(query) + self.position[: query.shape[1]]
        causal = torch.nn.Transformer.generate_square_subsequent_mask(query.shape[1])
        for block in self.blocks:
            x = block(x, memory, tgt_mask=causal, tgt_is_causal=True)
        return self.answer(self.norm(x[:, -1]))


def llama_queries(directory, layer, rows):
    """The frozen Llama's hidden state after `layer` layers at the last prompt token of each question,
    asked in Llama 3's chat format as the base Llama's question stage saw it (no image)."""
    from tokenizers import Tokenizer
    from transformers import LlamaModel
    tokenizer = Tokenizer.from_file(f"{directory}/tokenizer.json")
    llama = LlamaModel.from_pretrained(directory, dtype=torch.float32).eval()
    cache = {}
    for question in {row["question"] for row in rows}:
        text = ("<|start_header_id|>user<|end_header_id|>\n\n" + question +
                "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        ids = torch.tensor([tokenizer.encode(text).ids])   # the post-processor adds <|begin_of_text|>
        with torch.no_grad():
            cache[question] = llama(ids, output_hidden_states=True).hidden_states[layer][0, -1]
    return torch.stack([cache[row["question"]] for row in rows])


def pretrain_encoder(encoder, world, args, generator):
    """Per-patch targets from the scene records: shape, colour, size, row, column (0 = background)."""
    images, targets, _, _ = patch_labels(world.root, args.patch)
    heads = torch.nn.ModuleList(torch.nn.Linear(WIDTH, classes) for classes in [6, len(world.colors) + 1, 3, 4, 4])
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(heads.parameters()), lr=args.learning_rate, weight_decay=0)
    check = slice(len(images) - 500, len(images))   # the last 500 training scenes, only to report
    for step in range(1, args.pretrain_encoder + 1):
        batch = torch.randint(0, len(images), (args.batch,), generator=generator)
        hidden = encoder(images[batch])[:, 1:]
        loss = sum(torch.nn.functional.cross_entropy(head(hidden).flatten(0, 1), targets[batch][..., k].flatten())
                   for k, head in enumerate(heads))
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        if step % args.eval_every == 0 or step == args.pretrain_encoder:
            with torch.no_grad():
                hidden, labels = encoder(images[check])[:, 1:], targets[check]
                on_object = labels[..., 0] > 0
                accuracy = [((head(hidden).argmax(-1) == labels[..., k]) & on_object).sum().item() / on_object.sum().item()
                            for k, head in enumerate(heads)]
            names = ["shape", "colour", "size", "row", "column"]
            print(f"encoder step {step}: loss {loss.item():.3f}, on object patches " +
                  ", ".join(f"{name} {100 * value:.1f} %" for name, value in zip(names, accuracy)), flush=True)


def main():
    global WIDTH
    args = arguments()
    WIDTH = args.width
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    world = World(args.world, args.types)
    symbolic = args.image_tokens == "symbolic"
    aligned = args.reader == "transformer"
    train, heldout = world.tensors(world.train, symbolic, aligned), world.tensors(world.heldout, symbolic, aligned)
    print(f"{len(world.train)} training and {len(world.heldout)} held-out questions, {len(world.answers)} answers", flush=True)
    if symbolic:
        tokens = SymbolicTokens(len(world.colors))
    else:
        tokens = PixelEncoder(train[0].shape[-1], args.patch)
        if args.pretrain_encoder:
            pretrain_encoder(tokens, world, args, generator)
        if args.freeze_encoder:
            tokens.requires_grad_(False)
    if args.query_llama:
        train = (train[0], llama_queries(args.query_llama, args.query_layer, world.train), train[2])
        heldout = (heldout[0], llama_queries(args.query_llama, args.query_layer, world.heldout), heldout[2])
    if args.reader == "transformer":
        model = TransformerReader(tokens, len(world.vocabulary), len(world.answers), args.layers)
    else:
        model = Reader(tokens, len(world.vocabulary), len(world.answers), train[1].shape[-1] if args.query_llama else None)
    encoder_parameters = {id(p) for p in tokens.parameters()} if not symbolic else set()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_parameters]}]
    if not symbolic and not args.freeze_encoder:
        groups.append({"params": list(tokens.parameters()), "lr": args.encoder_learning_rate or args.learning_rate})
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, weight_decay=0)
    types = [row["type"] for row in world.heldout]
    for step in range(1, args.steps + 1):
        batch = torch.randint(0, len(train[2]), (args.batch,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(train[0][batch], train[1][batch]), train[2][batch])
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        if step % args.eval_every == 0:
            with torch.no_grad():
                right = (model(heldout[0], heldout[1]).argmax(-1) == heldout[2]).tolist()
            by_type = {kind: 100 * np.mean([r for r, t in zip(right, types) if t == kind]) for kind in sorted(set(types))}
            print(f"step {step}: loss {loss.item():.3f}, held-out {100 * np.mean(right):.1f} % (" +
                  ", ".join(f"{kind} {value:.1f}" for kind, value in by_type.items()) + ")", flush=True)


if __name__ == "__main__":
    main()
