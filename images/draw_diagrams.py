"""Draw the notebook's diagrams with matplotlib: what NST does, and the unrollings of its costs.

Run from the project root: python images/draw_diagrams.py
Writes into images/: nst_overview.png (C and S make G), content_unrolling.png (a volume of
activations unrolled for the content cost), gram_matrix.png (A times its transpose) and
style_unrolling.png (reshape, transpose, Gram matrices, for the style cost of one layer).
Deterministic; the drawings are this project's own work (the overview shows our two images).
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Polygon, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

IMAGES = Path(__file__).resolve().parent
CHANNEL_COLOURS = ["#3b6fb6", "#e08a2c", "#3f9b4f"]  # channel 1, 2, 3
N_H, N_W, N_C = 2, 3, 3  # the small volume every diagram unrolls
DPI = 100


def shade(colour, amount):
    """`colour` lightened towards white by `amount` in [0, 1]."""
    rgb = np.array(matplotlib.colors.to_rgb(colour))
    return tuple(rgb + (1 - rgb) * amount)


def arrow(ax, start, end, text="", offset=(0, 0.35), **options):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=18, lw=1.6,
                                 color="#333333", **options))
    if text:
        middle = (np.add(start, end) / 2) + offset
        ax.text(*middle, text, ha="center", va="bottom", fontsize=10)


def volume(ax, x, y, label, cell=0.55, depth=(0.32, 0.24)):
    """An n_H x n_W x n_C volume drawn as n_C slices one behind the other, front one numbered
    by position (row by row, as a reshape reads them)."""
    for c in reversed(range(N_C)):
        dx, dy = c * depth[0], c * depth[1]
        for i in range(N_H):
            for j in range(N_W):
                left, bottom = x + dx + j * cell, y + dy + (N_H - 1 - i) * cell
                ax.add_patch(Rectangle((left, bottom), cell, cell, facecolor=shade(
                    CHANNEL_COLOURS[c], 0.15 + 0.12 * ((i + j) % 3)), edgecolor="white", lw=1.2))
                if c == 0:
                    ax.text(left + cell / 2, bottom + cell / 2, str(i * N_W + j + 1),
                            ha="center", va="center", color="white", fontsize=11,
                            fontweight="bold")
    ax.text(x + N_W * cell / 2 + depth[0], y - 0.3, label, ha="center", va="top", fontsize=10)
    right = x + N_W * cell + (N_C - 1) * depth[0]
    return right, y + N_H * cell / 2


def matrix(ax, x, y, rows, columns, colour_of, text_of, label, cell=0.42):
    """A rows x columns grid of cells, top-left corner at (x, y + rows * cell)."""
    for r in range(rows):
        for c in range(columns):
            ax.add_patch(Rectangle((x + c * cell, y + (rows - 1 - r) * cell), cell, cell,
                                   facecolor=colour_of(r, c), edgecolor="white", lw=1.2))
            text = text_of(r, c)
            if text:
                ax.text(x + (c + 0.5) * cell, y + (rows - 0.5 - r) * cell, text, ha="center",
                        va="center", color="white", fontsize=9, fontweight="bold")
    ax.text(x + columns * cell / 2, y - 0.25, label, ha="center", va="top", fontsize=10)
    return x + columns * cell, y + rows * cell / 2


def canvas(width, height):
    figure, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return figure, ax


def save(figure, name):
    """Save as a PNG of 256 colours (small enough to commit)."""
    figure.savefig(IMAGES / name, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(figure)
    with Image.open(IMAGES / name) as drawn:
        quantized = drawn.convert("RGB").quantize(256)
    quantized.save(IMAGES / name, optimize=True)


def channel_legend(ax, x, y):
    for c, colour in enumerate(CHANNEL_COLOURS):
        ax.add_patch(Rectangle((x + 1.6 * c, y), 0.3, 0.3, facecolor=colour))
        ax.text(x + 1.6 * c + 0.4, y + 0.15, f"channel {c + 1}", va="center", fontsize=9)


def position_rows():
    """(row colour, row text) for an (n_H*n_W, n_C) unrolling: row p is position p + 1."""
    return (lambda r, c: shade(CHANNEL_COLOURS[c], 0.15 + 0.12 * ((r // N_W + r % N_W) % 3)),
            lambda r, c: str(r + 1))


def overview():
    """C and S go through VGG-19 into two costs; Adam changes G's pixels to lower their sum."""
    content = np.asarray(Image.open(IMAGES / "chelsea_the_cat_400x300.jpg").convert("RGB"))
    style = np.asarray(Image.open(IMAGES / "swirling_brushstrokes_400x300.jpg").convert("RGB"))
    rng = np.random.default_rng(1)
    start = np.clip(0.4 * (content - 120.0) + 120 + rng.uniform(-12, 12, content.shape), 0, 255)
    figure, ax = canvas(13, 5.2)
    for picture, (x, y), title in ((content, (0.2, 2.8), "content image C"),
                                   (style, (0.2, 0.2), "style image S"),
                                   (start.astype(np.uint8), (9.6, 1.5), "generated image G")):
        ax.imshow(picture, extent=(x, x + 2.9, y, y + 2.2))
        ax.text(x + 1.45, y + 2.3, title, ha="center", va="bottom", fontsize=11,
                fontweight="bold")
    ax.add_patch(Rectangle((4.5, 0.9), 3.4, 3.4, facecolor="#eeeeee", edgecolor="#555555"))
    ax.text(6.2, 3.8, "VGG-19 (fixed weights)", ha="center", fontsize=11, fontweight="bold")
    ax.text(6.2, 3.0, "content cost\n$J_{content}(C, G)$: conv4_2's\nactivations compared",
            ha="center", va="center", fontsize=10)
    ax.text(6.2, 1.7, "style cost\n$J_{style}(S, G)$: Gram matrices\nof conv1_1 ... conv5_1",
            ha="center", va="center", fontsize=10)
    arrow(ax, (3.2, 3.9), (4.45, 3.2))
    arrow(ax, (3.2, 1.3), (4.45, 1.9))
    arrow(ax, (9.55, 2.6), (7.95, 2.6), "G goes in too")
    arrow(ax, (6.2, 0.85), (11.0, 1.4), connectionstyle="arc3,rad=0.35")
    ax.set_ylim(-0.6, 5.2)
    ax.text(8.6, -0.5, "Adam changes G's pixels to lower\n"
            r"$J(G) = \alpha J_{content} + \beta J_{style}$", ha="center", fontsize=10)
    ax.text(11.05, 4.1, "starts as C, faded, under\nlight noise; ends with C's\n"
            "content in S's style", ha="center", fontsize=9, color="#444444")
    save(figure, "nst_overview.png")


def content_unrolling():
    """A (1, n_H, n_W, n_C) volume becomes (n_H*n_W, n_C): one row per position."""
    figure, ax = canvas(10, 4.2)
    right, middle = volume(ax, 0.4, 1.4, f"$a^{{(C)}}$ or $a^{{(G)}}$: ($n_H$={N_H}, "
                                         f"$n_W$={N_W}, $n_C$={N_C})")
    arrow(ax, (right + 0.3, middle + 0.3), (right + 2.3, middle + 0.3),
          "tf.reshape to\n($n_H \\times n_W$, $n_C$)")
    colour, text = position_rows()
    end, _ = matrix(ax, right + 2.7, 0.9, N_H * N_W, N_C, colour, text,
                    "one row per position,\none column per channel")
    ax.text(end + 0.4, 2.2, "$J_{content} = \\dfrac{1}{4 n_H n_W n_C} \\sum "
            "(a^{(C)} - a^{(G)})^2$\n\nentry by entry: C's and G's\nunrolled matrices compared "
            "\nat the same place", va="center", fontsize=10)
    channel_legend(ax, 0.4, 3.7)
    save(figure, "content_unrolling.png")


def gram_matrix():
    """G_A = A A^T: entry (i, j) is the dot product of rows i and j of A."""
    figure, ax = canvas(11, 4.2)
    n = N_H * N_W
    highlight = {0: "#3b6fb6", 2: "#3f9b4f"}  # rows i = 1 and j = 3

    def row_colour(r, c):
        return highlight.get(r, "#b9b9b9")

    end, middle = matrix(ax, 1.0, 1.6, N_C, n, row_colour, lambda r, c: "",
                         "A: ($n_C$, $n_H \\times n_W$)\none row per channel")
    for r in highlight:
        ax.text(0.95, 1.6 + (N_C - 0.5 - r) * 0.42, f"row {r + 1}", ha="right", va="center",
                fontsize=9, color=highlight[r])
    ax.text(end + 0.3, middle, "×", fontsize=20, ha="center", va="center")
    end, _ = matrix(ax, end + 0.6, 0.75, n, N_C, lambda r, c: highlight.get(c, "#b9b9b9"),
                    lambda r, c: "", "$A^T$: ($n_H \\times n_W$, $n_C$)")
    ax.text(end + 0.35, middle, "=", fontsize=20, ha="center", va="center")

    def gram_colour(r, c):
        return "#8a4fa8" if (r, c) == (0, 2) else shade("#8a4fa8", 0.55 if r == c else 0.75)

    end, _ = matrix(ax, end + 0.7, 1.6, N_C, N_C, gram_colour,
                    lambda r, c: "$G_{13}$" if (r, c) == (0, 2) else "",
                    "$G_A$: ($n_C$, $n_C$)")
    ax.text(end + 0.4, middle, "$G_{13}$ = row 1 · row 3 of A:\nlarge when channels 1 and 3\n"
            "are active at the same places\n\ndiagonal $G_{ii}$: how active\nchannel i is "
            "overall", va="center", fontsize=10)
    save(figure, "gram_matrix.png")


def style_unrolling():
    """Reshape to (n_H*n_W, n_C), transpose to (n_C, n_H*n_W), Gram matrix (n_C, n_C)."""
    figure, ax = canvas(13.5, 4.4)
    right, middle = volume(ax, 0.3, 1.6, f"$a^{{(S)}}$ or $a^{{(G)}}$: ({N_H}, {N_W}, {N_C})")
    arrow(ax, (right + 0.2, middle + 0.3), (right + 1.6, middle + 0.3), "reshape")
    colour, text = position_rows()
    end, _ = matrix(ax, right + 1.8, 1.1, N_H * N_W, N_C, colour, text,
                    "($n_H \\times n_W$, $n_C$)")
    arrow(ax, (end + 0.2, middle + 0.3), (end + 1.6, middle + 0.3), "transpose")
    end, _ = matrix(ax, end + 1.8, 1.7, N_C, N_H * N_W, lambda r, c: colour(c, r),
                    lambda r, c: text(c, r), "($n_C$, $n_H \\times n_W$)\none row per channel")
    arrow(ax, (end + 0.2, middle + 0.3), (end + 1.6, middle + 0.3), "gram_matrix")
    end, _ = matrix(ax, end + 1.8, 1.7, N_C, N_C, lambda r, c: shade(
        "#8a4fa8", 0.5 if r == c else 0.7), lambda r, c: "", "$G^{(S)}$ or $G^{(G)}$")
    ax.text(0.3, 0.15, "$J_{style}^{[l]} = \\dfrac{1}{4 n_C^2 (n_H n_W)^2} \\sum_{i,j} "
            "(G^{(S)}_{ij} - G^{(G)}_{ij})^2$     Reshaping straight to ($n_C$, $n_H \\times "
            "n_W$) would give the right shape but mix channels: a row must hold one channel.",
            fontsize=10)
    channel_legend(ax, 0.3, 3.9)
    save(figure, "style_unrolling.png")


if __name__ == "__main__":
    overview()
    content_unrolling()
    gram_matrix()
    style_unrolling()
