"""The embedded catalog: products generated deterministically, in the Hub items schema.

No network is needed to run the lab: this module writes a product catalog whose prices really
depend on the text, so a model that reads the text can learn them.

    items = generate(1_000, seed=42)                  # same seed, same bytes, on every machine
    train, val, test = make_splits(seed=42)
    path = embedded_dataset("items")                  # cached folder, the EMBEDDED default
    python -m pricer data --out data/catalog          # train / validation / test (+ prompts)

A price is a product type's base price, scaled by what the title and summary say: the size,
capacity or power number (a smooth curve, so reading the number pays), the brand's tier, the
edition, the material, the pack count and the condition, times modest lognormal noise.
"""

import random
from dataclasses import dataclass
from pathlib import Path

from pricer.config import pricer_home
from pricer.items import MAX_PRICE, Item

VERSION = 1  # bump when the generator changes: cached catalogs are keyed by it
SIZES = {"train": 4_000, "val": 200, "test": 400}
NOISE = 0.15  # lognormal sigma: ~15% of a price is not in the text at all


@dataclass(frozen=True)
class Kind:
    """A product type: base price at the middle spec, and how price scales with the spec number."""

    noun: str
    base: float  # dollars, brand-neutral, new, single, at the middle spec value
    spec: str  # how the number reads in a title, e.g. "{}W"
    span: tuple[float, float]  # spec values run log-uniformly from the first to the second
    exponent: float  # price ~ (value / geometric middle of span) ** exponent
    weight: float  # pounds at the middle spec


# Per category: product kinds, brands from budget to luxury (tier multipliers below), materials.
TIERS = (0.6, 0.8, 1.0, 1.2, 1.7, 2.5)
CATEGORIES = {
    "Electronics": (
        (Kind("Bluetooth Speaker", 40, "{}W", (5, 80), 0.5, 1.5),
         Kind("Wireless Earbuds", 50, "{}-Hour Battery", (6, 40), 0.45, 0.2),
         Kind("Portable SSD", 70, "{}GB", (250, 4000), 0.6, 0.2),
         Kind("Computer Monitor", 160, "{}-Inch", (21, 34), 1.8, 12),
         Kind("Smart Watch", 110, "{}mm", (38, 49), 0.8, 0.1)),
        ("Zentrix", "Voltana", "Auralink", "Nexora", "Lumivox", "Orbital Audio"),
        (("plastic", 0.85), ("aluminum", 1.15), ("glass", 1.1), ("titanium", 1.5)),
    ),
    "Appliances": (
        (Kind("Blender", 45, "{}W", (300, 1500), 0.7, 6),
         Kind("Air Fryer", 70, "{}-Quart", (2, 8), 0.7, 9),
         Kind("Espresso Machine", 180, "{}-Bar", (9, 20), 0.9, 15),
         Kind("Robot Vacuum", 200, "{}Pa Suction", (1500, 8000), 0.5, 8),
         Kind("Space Heater", 40, "{}W", (400, 2000), 0.5, 5)),
        ("Kitchora", "Homvio", "Brevant", "Cuisella", "Valcrest", "Maison Royale"),
        (("plastic", 0.85), ("stainless steel", 1.25), ("brushed copper", 1.45)),
    ),
    "Tools_and_Home_Improvement": (
        (Kind("Cordless Drill", 60, "{}V", (12, 40), 0.8, 4),
         Kind("Circular Saw", 80, "{}-Inch Blade", (6, 12), 1.0, 10),
         Kind("Socket Set", 30, "{}-Piece", (20, 200), 0.55, 5),
         Kind("LED Work Light", 25, "{} Lumens", (1000, 20000), 0.45, 2),
         Kind("Tool Chest", 150, "{}-Drawer", (3, 12), 0.7, 60)),
        ("Torkwell", "Grit & Co", "Ironhart", "Dewmark", "Steelforge", "Festline Pro"),
        (("plastic", 0.85), ("steel", 1.1), ("chrome vanadium", 1.3)),
    ),
    "Automotive": (
        (Kind("Car Battery", 110, "{} CCA", (400, 900), 0.9, 40),
         Kind("Dash Cam", 50, "{}-Degree Lens", (100, 170), 1.5, 0.3),
         Kind("Tire Inflator", 35, "{} PSI", (100, 200), 0.6, 2),
         Kind("Jump Starter", 70, "{}A Peak", (800, 4000), 0.6, 2.5),
         Kind("Car Cover", 45, "{}-Layer", (1, 7), 0.5, 6)),
        ("Roadex", "Motiva", "Drivestone", "Autoquest", "Velocity Labs", "Carrera Elite"),
        (("polyester", 0.9), ("ABS plastic", 1.0), ("aluminum", 1.2)),
    ),
    "Office_Products": (
        (Kind("Office Chair", 120, "{}lb Capacity", (250, 500), 1.0, 35),
         Kind("Label Maker", 30, "{}mm Tape", (6, 24), 0.6, 1),
         Kind("Paper Shredder", 60, "{}-Sheet", (6, 24), 0.8, 15),
         Kind("Standing Desk", 250, "{}-Inch", (40, 72), 0.9, 70),
         Kind("Ballpoint Pens", 6, "{}-Count", (10, 100), 0.7, 0.3)),
        ("Papermint", "Officio", "Deskwise", "Scribeline", "Ergonomix", "Montclair"),
        (("plastic", 0.85), ("mesh", 1.0), ("bamboo", 1.15), ("leather", 1.5)),
    ),
    "Musical_Instruments": (
        (Kind("Digital Piano", 350, "{} Voices", (32, 600), 0.5, 30),
         Kind("Guitar Amplifier", 90, "{}W", (10, 100), 0.6, 15),
         Kind("Studio Microphone", 70, "{}mm Capsule", (16, 34), 0.8, 1),
         Kind("Drum Sticks", 9, "{} Pairs", (1, 12), 0.75, 0.5),
         Kind("Guitar Strings", 7, "{} Sets", (1, 10), 0.8, 0.1)),
        ("Harmonia", "Tonewood", "Resonique", "Stagecraft", "Ambervale", "Steinhall"),
        (("maple", 1.0), ("rosewood", 1.3), ("nickel", 0.9), ("mahogany", 1.2)),
    ),
    "Toys_and_Games": (
        (Kind("Building Blocks Set", 25, "{}-Piece", (100, 2000), 0.55, 2),
         Kind("RC Car", 40, "{} mph", (10, 45), 0.7, 3),
         Kind("Jigsaw Puzzle", 12, "{}-Piece", (300, 3000), 0.35, 1),
         Kind("Card Game", 20, "{} Cards", (50, 500), 0.4, 1),
         Kind("Plush Toy", 12, "{}-Inch", (8, 36), 0.9, 1)),
        ("Tiny Tots", "Playmoor", "Brickly", "Funtastic", "Wonderkin", "Kingsley Toys"),
        (("plastic", 0.9), ("wood", 1.2), ("cotton", 1.0)),
    ),
    "Cell_Phones_and_Accessories": (
        (Kind("Phone Case", 12, "{}ft Drop Protection", (4, 15), 0.35, 0.1),
         Kind("Power Bank", 25, "{}mAh", (5000, 40000), 0.6, 0.8),
         Kind("Wireless Charger", 20, "{}W", (5, 50), 0.5, 0.3),
         Kind("Unlocked Smartphone", 250, "{}GB", (64, 1024), 0.45, 0.4),
         Kind("Screen Protector", 8, "{}H Hardness", (6, 10), 0.8, 0.05)),
        ("Cellix", "Mobiq", "Phonara", "Chargeon", "Spectra One", "Aurelius"),
        (("silicone", 0.85), ("polycarbonate", 1.0), ("leather", 1.35), ("carbon fiber", 1.6)),
    ),
    "Sports_and_Outdoors": (
        (Kind("Camping Tent", 90, "{}-Person", (1, 8), 0.7, 8),
         Kind("Yoga Mat", 20, "{}mm Thick", (3, 10), 0.4, 2.5),
         Kind("Dumbbell Set", 60, "{}lb", (10, 90), 0.85, 40),
         Kind("Mountain Bike", 400, "{}-Speed", (7, 27), 0.5, 32),
         Kind("Kayak", 300, "{}-Foot", (8, 14), 1.0, 45)),
        ("Trailbound", "Summitek", "Ridgeway", "Northpeak", "Altura", "Everest Gold"),
        (("nylon", 0.9), ("polyester", 0.85), ("aluminum", 1.15), ("carbon fiber", 1.6)),
    ),
    "Home_and_Kitchen": (
        (Kind("Cookware Set", 90, "{}-Piece", (5, 15), 0.7, 15),
         Kind("Chef Knife", 40, "{}-Inch", (6, 10), 0.8, 0.5),
         Kind("Bed Sheet Set", 35, "{} Thread Count", (300, 1000), 0.6, 3),
         Kind("Cast Iron Skillet", 25, "{}-Inch", (6, 15), 0.9, 6),
         Kind("Dinnerware Set", 60, "{}-Piece", (12, 32), 0.7, 20)),
        ("Hearthly", "Casa Nova", "Kitchwell", "Linenfold", "Sterling Home", "Château"),
        (("ceramic", 0.9), ("stainless steel", 1.15), ("cotton", 1.0), ("copper", 1.5)),
    ),
}
EDITIONS = (("", 1.0, 0.55), ("Lite", 0.8, 0.15), ("Pro", 1.35, 0.2), ("Max", 1.6, 0.1))  # name, x, p
CONDITIONS = (("New", 1.0, 0.8), ("Renewed", 0.72, 0.12), ("Used - Like New", 0.6, 0.08))
PACKS = (2, 3, 4, 6, 10)
FEATURES = (
    "a one-year limited warranty", "easy setup in minutes", "a compact, space-saving design",
    "a sleek matte finish", "quiet operation", "fast shipping from a US warehouse",
    "a satisfaction guarantee", "a gift-ready box", "dishwasher-safe parts", "an ergonomic grip",
    "a travel pouch", "energy-saving standby", "customer support by phone and email",
)


def generate(n: int, seed: int = 42, start_id: int = 0) -> list[Item]:
    """n Items drawn from one seeded stream: the same seed gives the same Items everywhere."""
    rng = random.Random(seed)
    return [_product(rng, start_id + i) for i in range(n)]


def make_splits(seed: int = 42, sizes: dict | None = None) -> tuple[list[Item], list[Item], list[Item]]:
    """(train, val, test) Items, drawn once and cut in that order."""
    sizes = sizes or SIZES
    items = generate(sum(sizes.values()), seed)
    a, b = sizes["train"], sizes["train"] + sizes["val"]
    return items[:a], items[a:b], items[b:]


def _product(rng: random.Random, id_: int) -> Item:
    """One product; drawn again while its price is over the window, so the tail has no pile-up."""
    category = rng.choice(list(CATEGORIES))
    kinds, brands, materials = CATEGORIES[category]
    kind = rng.choice(kinds)
    lo, hi = kind.span
    value = _nice(lo * (hi / lo) ** rng.random())
    tier = rng.randrange(len(brands))
    edition, edition_x = _weighted(rng, EDITIONS)
    material, material_x = rng.choice(materials)
    condition, condition_x = _weighted(rng, CONDITIONS)
    pack = rng.choice(PACKS) if kind.base < 40 and rng.random() < 0.35 else 1
    scale = (value / (lo * hi) ** 0.5) ** kind.exponent
    price = _shop_price(rng, kind.base * scale * TIERS[tier] * edition_x * material_x * condition_x
                        * pack ** 0.85 * rng.lognormvariate(0, NOISE))
    if price > MAX_PRICE:
        return _product(rng, id_)
    weight = round(kind.weight * scale ** 0.5 * pack * rng.uniform(0.9, 1.1), 2)

    brand = brands[tier]
    spec = kind.spec.format(value)
    title = " ".join(filter(None, (brand, edition, spec, kind.noun)))
    title += f", {material[0].upper()}{material[1:]}" + (f", Pack of {pack}" if pack > 1 else "")
    title += f" ({condition})" if condition != "New" else ""
    features = rng.sample(FEATURES, 3)
    article = "An" if spec[0] in "8" or spec.startswith(("11", "18")) else "A"
    description = (f"{article} {spec} {kind.noun.lower()} made of {material}, with {features[0]} "
                   f"and {features[1]}.")
    details = f"Condition: {condition}; Weight: {weight} pounds; Material: {material}; Pack: {pack}"
    summary = (f"Title: {title}\nCategory: {category.replace('_', ' ')}\nBrand: {brand}\n"
               f"Description: {description}\nDetails: {details}")
    full = f"{title}\n{description} Also includes {features[2]}.\n{details}"
    return Item(title=title, category=category.replace("_", " "), price=price, full=full,
                weight=weight, summary=summary, id=id_)


def _nice(value: float) -> int:
    """A spec number as a shop would print it: whole, and two significant figures from 10 up."""
    digits = len(str(int(value))) - 2
    return max(1, int(round(value, -digits)) if digits > 0 else round(value))


def _weighted(rng: random.Random, options: tuple) -> tuple[str, float]:
    name, x, _ = rng.choices(options, weights=[p for *_, p in options])[0]
    return name, x


def _shop_price(rng: random.Random, price: float) -> float:
    """Prices end the way shops end them: mostly .99, some .95 or .00, a few odd cents."""
    dollars, roll = int(price), rng.random()
    if roll < 0.6:
        return dollars + 0.99
    if roll < 0.75:
        return dollars + 0.95
    if roll < 0.85:
        return float(max(dollars, 1))
    return round(price, 2)


def embedded_dataset(kind: str = "items") -> Path:
    """The cached embedded catalog folder ("items" or "prompts"), written on first use."""
    from pricer.config import PRESETS

    summary_tokens = PRESETS["tiny"].summary_tokens
    folder = pricer_home() / f"catalog-v{VERSION}" / (kind if kind == "items" else f"prompts-{summary_tokens}")
    if not (folder / "test.jsonl").exists():
        write_catalog(folder.parent, summary_tokens=summary_tokens if kind == "prompts" else None)
    return folder


def write_catalog(out: str | Path, seed: int = 42, sizes: dict | None = None,
                  summary_tokens: int | None = None, tokenizer=None) -> Path:
    """Write out/items (and out/prompts-<cap> when summary_tokens is given); returns out."""
    out = Path(out).expanduser()
    train, val, test = make_splits(seed, sizes)
    Item.save_items(out / "items", train, val, test)
    if summary_tokens is not None:
        from pricer.items import make_all_prompts

        if tokenizer is None:
            from pricer.config import EMBEDDED
            from pricer.models import load_tokenizer

            tokenizer = load_tokenizer(EMBEDDED)
        make_all_prompts(tokenizer, train, val, test, max_tokens=summary_tokens)
        Item.save_prompts(out / f"prompts-{summary_tokens}", train, val, test)
    return out
