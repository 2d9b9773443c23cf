"""The embedded catalog: products generated deterministically, in the Hub items schema.

No network is needed to run the lab: this module writes a product catalog whose prices depend
on the text the way real listings' prices do, so a model that reads can learn what a bag of
words can't.

    items = generate(1_000, seed=42)                  # same seed, same bytes, on every machine
    train, val, test = make_splits(seed=42)           # each split its own stream: a bigger train
                                                      # split keeps the same val and test items
    product(7, condition="For parts or not working")  # one listing with a fact fixed: what is it worth?
    python -m pricer data --out data/catalog --train 20000    # train / validation / test (+ prompts)

Where the value lives (each a way real listings defeat a sum of word weights):
- numbers read as magnitudes: a smooth curve in each spec number (two in many listings), written
  in mixed units ("1.5 TB" / "1500GB", "1.2 kW" / "1200W", "20,000 mAh" / "20K mAh", "2-Pack" /
  "Pack of 2"); a bag of words sees "1500gb" as one unrelated token, and "1.5", "2" not at all;
- combinations: a line's factor depends on the brand's tier (a premium brand's budget line costs
  what a mid brand's standard one does; a budget brand's "Pro" adds little), a pack's discount on
  what is packed, a material's factor on the kind of product, and a bundled accessory adds
  dollars, not a percentage;
- phrases that flip value: "for parts or not working", renewed or used, "tool only, battery not
  included", a replacement part sold alone, warranty length; often stated only in the
  description or details, far from the words they qualify ("not", "no", "only", "without" are
  English stop words, which the course's bag of words drops); and accessories that name a pricier
  product they fit ("Phone Case for Aurelius Ultra Smartphone") without costing more.
Summaries lead with the title and key specs, then marketing and details, as real listings do:
long enough that the course's 110-token cut bites, and some of the cut-off details still matter.
A price is the value its facts imply (`value_of`) times lognormal noise (NOISE); `listings`
gives each Item with that noiseless value: the best any model can do, the noise floor.
"""

import dataclasses
import random
from dataclasses import dataclass

from pricer.prompts import MAX_PRICE, MIN_PRICE

VERSION = 2  # bump when the generator changes: cached catalogs are keyed by it
SIZES = {"train": 4_000, "val": 200, "test": 400}
NOISE = 0.12  # lognormal sigma: the part of a price that is not in the text at all


@dataclass(frozen=True)
class Spec:
    """A spec number: how it reads (unit forms), its range, and how price scales with it.

    Each form is (template, factor, minimum): the value times factor, shown in the template,
    when the value is at least the minimum; so 1500 reads "1500GB" or "1.5 TB"."""

    forms: tuple[tuple[str, float, float], ...]
    span: tuple[float, float]  # values run log-uniformly from the first to the second
    exponent: float  # price ~ (value / geometric middle of span) ** exponent
    steps: tuple[float, ...] = ()  # when set, the value is one of these instead


@dataclass(frozen=True)
class Kind:
    """A product type: base price at the middle spec, and what moves its price."""

    noun: str
    base: float  # dollars, mid brand, standard line, new, single, at the middle spec value
    spec: Spec
    weight: float  # pounds at the middle spec
    extra: Spec | None = None  # a second number in the listing
    pack: float | None = None  # price ~ count ** pack when sold in packs; None: never packed
    battery: float | None = None  # price factor when sold without its battery; None: no battery
    part: str | None = None  # a replacement part sometimes sold alone, at PART of the price
    host: str | None = None  # the product an accessory fits, sometimes named ("for ... Smartphone")
    matter: float = 0.5  # how much material matters here: price ~ material factor ** matter


def _forms(*forms) -> tuple:
    return tuple((f, 1.0, 0.0) if isinstance(f, str) else f for f in forms)


W = _forms("{}W", "{} Watts", "{}-Watt", ("{} kW", 1e-3, 1000))
GB = _forms("{}GB", "{} GB", ("{}TB", 1e-3, 1000), ("{} TB", 1e-3, 1000))
INCH = _forms("{}-Inch", '{}"', "{} in")
PIECES = _forms("{}-Piece", "{} Pcs", "{}-Pc")
MAH = _forms("{}mAh", "{:,} mAh", ("{}K mAh", 1e-3, 1000))


def _spec(forms, lo, hi, exponent, steps=()) -> Spec:
    return Spec(_forms(forms) if isinstance(forms, str) else forms, (lo, hi), exponent, steps)


# Per category: product kinds, brands from budget to luxury (TIERS), materials with their factor.
TIERS = (0.6, 0.8, 1.0, 1.25, 1.7, 2.5)
CATEGORIES = {
    "Electronics": (
        (Kind("Bluetooth Speaker", 45, _spec(W, 5, 100, 1.25), 1.5,
              extra=_spec("{}-Hour Playtime", 8, 30, 0.55), pack=0.95, matter=0.3),
         Kind("Wireless Earbuds", 55, _spec(_forms("{}-Hour Battery", "{}H Playtime"), 6, 40, 0.9), 0.2,
              pack=0.95, part="Charging Case", matter=0.4),
         Kind("Portable SSD", 75, _spec(GB, 250, 4000, 1.25), 0.2,
              extra=_spec(_forms("up to {} MB/s", "{}MB/s Read"), 400, 2000, 0.7), matter=0.2),
         Kind("Computer Monitor", 170, _spec(_forms(*INCH, ("{} cm", 2.54, 0)), 19, 34, 3), 12,
              extra=_spec("{}Hz", 60, 240, 0.7, (60, 75, 100, 144, 165, 240)), part="Stand", matter=0.1),
         Kind("Smart Watch", 120, _spec("{}mm", 38, 49, 2.7), 0.1, extra=_spec("{}-Day Battery", 1, 14, 0.35),
              part="Band", matter=1.4)),
        ("Zentrix", "Voltana", "Auralink", "Nexora", "Lumivox", "Orbital Audio"),
        (("plastic", 0.8), ("aluminum", 1.2), ("glass", 1.1), ("titanium", 1.7)),
    ),
    "Appliances": (
        (Kind("Blender", 50, _spec(W, 300, 1500, 1.45), 6, extra=_spec("{}-Ounce Jar", 32, 72, 0.55),
              part="Jar", matter=0.5),
         Kind("Air Fryer", 75, _spec(_forms("{}-Quart", "{} Qt", ("{}L", 0.946, 0)), 2, 8, 1.25), 9,
              extra=_spec(W, 1200, 1800, 0.7), part="Basket", matter=0.4),
         Kind("Espresso Machine", 190, _spec("{}-Bar", 9, 20, 2.15), 15,
              extra=_spec(_forms("{}oz Water Tank", ("{}L Water Tank", 0.0296, 0)), 30, 90, 0.6), part="Portafilter",
              matter=1.2),
         Kind("Robot Vacuum", 210, _spec(_forms("{}Pa Suction", "{:,} Pa"), 1500, 8000, 1.25), 8,
              extra=_spec("{}-Minute Runtime", 60, 200, 0.55), part="Brush Roll", matter=0.1),
         Kind("Space Heater", 45, _spec(W, 400, 2000, 0.9), 5, pack=0.9, matter=0.3)),
        ("Kitchora", "Homvio", "Brevant", "Cuisella", "Valcrest", "Maison Royale"),
        (("plastic", 0.8), ("stainless steel", 1.25), ("brushed copper", 1.5), ("glass", 1.1)),
    ),
    "Tools_and_Home_Improvement": (
        (Kind("Cordless Drill", 65, _spec(_forms("{}V", "{}-Volt"), 12, 40, 1.8), 4,
              extra=_spec(_forms("{} In-lbs Torque", ("{} Nm Torque", 0.113, 0)), 300, 1200, 0.7), battery=0.55,
              matter=0.2),
         Kind("Circular Saw", 85, _spec(_forms("{}-Inch Blade", '{}" Blade'), 6, 12, 2.5), 10,
              battery=0.6, part="Blade", matter=0.2),
         Kind("Socket Set", 32, _spec(PIECES, 20, 200, 1.25), 5, matter=1.2),
         Kind("LED Work Light", 28, _spec(_forms("{} Lumens", "{:,} Lumens", "{}LM"), 1000, 20000, 0.95), 2,
              pack=0.8, battery=0.7, matter=0.1),
         Kind("Tool Chest", 160, _spec("{}-Drawer", 3, 12, 1.6), 60, extra=_spec('{}" Wide', 26, 56, 1.1),
              matter=0.8)),
        ("Torkwell", "Grit & Co", "Ironhart", "Dewmark", "Steelforge", "Festline"),
        (("plastic", 0.8), ("steel", 1.1), ("chrome vanadium", 1.3), ("carbon fiber", 1.5)),
    ),
    "Automotive": (
        (Kind("Car Battery", 120, _spec(_forms("{} CCA", "{} Cold Cranking Amps"), 400, 900, 2), 40,
              extra=_spec("{}Ah", 40, 100, 0.55), matter=0.0),
         Kind("Dash Cam", 55, _spec(_forms("{}-Degree Lens", "{}° Wide Angle"), 100, 170, 2.7), 0.3,
              pack=0.95, part="Mount", matter=0.1),
         Kind("Tire Inflator", 38, _spec("{} PSI", 100, 200, 1.45), 2, battery=0.75, matter=0.3),
         Kind("Jump Starter", 75, _spec(_forms("{}A Peak", "{} Amp"), 800, 4000, 1.25), 2.5,
              extra=_spec(MAH, 10000, 30000, 0.55), part="Clamp Cables", matter=0.2),
         Kind("Car Cover", 48, _spec("{}-Layer", 1, 7, 0.9), 6,
              extra=_spec(_forms("Fits up to {} Inches", ("Fits up to {} cm", 2.54, 0)), 170, 230, 0.95),
              matter=1.0)),
        ("Roadex", "Motiva", "Drivestone", "Autoquest", "Velocity Labs", "Carrera"),
        (("polyester", 0.85), ("ABS plastic", 1.0), ("aluminum", 1.2), ("rubber", 0.95)),
    ),
    "Office_Products": (
        (Kind("Office Chair", 130, _spec(_forms("{}lb Capacity", "{} lbs Weight Capacity"), 250, 500, 2.15),
              35, part="Gas Cylinder", matter=1.0),
         Kind("Label Maker", 32, _spec("{}mm Tape", 6, 24, 1.45, (6, 9, 12, 18, 24)), 1, battery=0.97,
              matter=0.1),
         Kind("Paper Shredder", 65, _spec(_forms("{}-Sheet", "{} Sheets"), 6, 24, 1.8), 15,
              extra=_spec("{}-Minute Run Time", 5, 60, 0.5), matter=0.1),
         Kind("Standing Desk", 260, _spec(_forms(*INCH, ("{} cm", 2.54, 0)), 40, 72, 1.9), 70,
              extra=_spec(_forms("{}lb Lift Capacity", ("{} kg Lift Capacity", 0.4536, 0)), 150, 350, 0.7),
              part="Frame",
              matter=0.7),
         Kind("Ballpoint Pens", 6, _spec(_forms("{}-Count", "{} Pens"), 10, 100, 1.45), 0.3, pack=0.7,
              matter=0.3)),
        ("Papermint", "Officio", "Deskwise", "Scribeline", "Ergonomix", "Montclair"),
        (("plastic", 0.85), ("mesh", 1.0), ("bamboo", 1.15), ("leather", 1.5)),
    ),
    "Musical_Instruments": (
        (Kind("Digital Piano", 360, _spec("{} Voices", 32, 600, 0.7), 30,
              extra=_spec("{}-Key", 61, 88, 2.7, (61, 76, 88)), part="Sustain Pedal", matter=0.3),
         Kind("Guitar Amplifier", 95, _spec(W, 10, 100, 1.25), 15,
              extra=_spec('{}" Speaker', 6, 15, 0.7, (6, 8, 10, 12, 15)),
              matter=0.3),
         Kind("Studio Microphone", 75, _spec("{}mm Capsule", 16, 34, 1.8), 1, matter=0.2),
         Kind("Drum Sticks", 10, _spec(_forms("{} Pairs", "{}-Pair"), 2, 12, 1.45), 0.5, matter=1.0),
         Kind("Guitar Strings", 8, _spec(_forms("{} Sets", "{}-Set"), 2, 10, 1.55), 0.1, host="Acoustic Guitar",
              matter=0.8)),
        ("Harmonia", "Tonewood", "Resonique", "Stagecraft", "Ambervale", "Steinhall"),
        (("maple", 1.0), ("rosewood", 1.3), ("nickel", 0.9), ("mahogany", 1.2)),
    ),
    "Toys_and_Games": (
        (Kind("Building Blocks Set", 28, _spec(PIECES, 100, 2000, 1.25), 2, matter=0.6),
         Kind("RC Car", 45, _spec(_forms("{} mph", "{} MPH Top Speed", ("{} km/h", 1.609, 0)), 10, 45, 1.6), 3,
              battery=0.9, matter=0.1),
         Kind("Jigsaw Puzzle", 13, _spec(PIECES, 300, 3000, 0.7), 1, pack=0.8, matter=1.0),
         Kind("Card Game", 20, _spec("{} Cards", 50, 500, 0.7), 1, pack=0.85, matter=0.2),
         Kind("Plush Toy", 13, _spec(INCH, 8, 36, 1.8), 1, pack=0.9, matter=0.4)),
        ("Tiny Tots", "Playmoor", "Brickly", "Funtastic", "Wonderkin", "Kingsley Toys"),
        (("plastic", 0.9), ("wood", 1.25), ("cotton", 1.0)),
    ),
    "Cell_Phones_and_Accessories": (
        (Kind("Phone Case", 13, _spec(_forms("{}ft Drop Protection", "{}-Foot Drop Tested"), 4, 15, 0.7), 0.1,
              pack=0.8, host="Smartphone", matter=1.0),
         Kind("Power Bank", 28, _spec(MAH, 5000, 40000, 1.2), 0.8, extra=_spec(W, 10, 100, 0.55),
              pack=0.9, matter=0.1),
         Kind("Wireless Charger", 22, _spec(W, 5, 50, 1.1), 0.3, pack=0.85, host="Smartphone", matter=0.2),
         Kind("Unlocked Smartphone", 260, _spec(GB, 64, 1000, 0.9, (64, 128, 256, 512, 1000)), 0.4,
              extra=_spec("{}GB RAM", 4, 16, 0.9, (4, 6, 8, 12, 16)), part="Back Glass", matter=0.3),
         Kind("Screen Protector", 9, _spec("{}H Hardness", 6, 10, 1.45), 0.05, pack=0.6, host="Smartphone",
              matter=0.2)),
        ("Cellix", "Mobiq", "Phonara", "Chargeon", "Spectra One", "Aurelius"),
        (("silicone", 0.85), ("polycarbonate", 1.0), ("leather", 1.35), ("carbon fiber", 1.6)),
    ),
    "Sports_and_Outdoors": (
        (Kind("Camping Tent", 95, _spec("{}-Person", 1, 8, 1.45), 8,  # lighter costs more
              extra=_spec(_forms("{} lbs Packed", ("{} kg Packed", 0.4536, 0)), 3, 15, -0.7), part="Rainfly",
              matter=0.6),
         Kind("Yoga Mat", 22, _spec(_forms("{}mm Thick", "{}mm"), 3, 10, 0.9), 2.5, pack=0.9, matter=0.5),
         Kind("Dumbbell Set", 65, _spec(_forms("{}lb", "{} lbs", ("{} kg", 0.4536, 0)), 10, 90, 1.2), 40,
              matter=0.2),
         Kind("Mountain Bike", 420, _spec("{}-Speed", 7, 27, 1.1), 32,
              extra=_spec('{}" Wheels', 24, 29, 0.9, (24, 26, 27.5, 29)), part="Rear Wheel", matter=1.3),
         Kind("Kayak", 320, _spec(_forms("{}-Foot", "{} ft"), 8, 14, 2.35), 45,
              extra=_spec("{} lb Capacity", 250, 500, 0.7), part="Seat", matter=0.4)),
        ("Trailbound", "Summitek", "Ridgeway", "Northpeak", "Altura", "Everest Gold"),
        (("nylon", 0.9), ("polyester", 0.85), ("aluminum", 1.15), ("carbon fiber", 1.6)),
    ),
    "Home_and_Kitchen": (
        (Kind("Cookware Set", 95, _spec(PIECES, 5, 15, 1.45), 15, part="Lid", matter=1.2),
         Kind("Chef Knife", 42, _spec(INCH, 6, 10, 1.6), 0.5, matter=1.0),
         Kind("Bed Sheet Set", 38, _spec("{} Thread Count", 300, 1000, 1.25), 3, pack=0.9, matter=0.6),
         Kind("Cast Iron Skillet", 28, _spec(INCH, 6, 15, 1.8), 6, pack=0.9, matter=0.0),
         Kind("Dinnerware Set", 62, _spec(PIECES, 12, 32, 1.45), 20, matter=1.0)),
        ("Hearthly", "Casa Nova", "Kitchwell", "Linenfold", "Sterling Home", "Château"),
        (("ceramic", 0.9), ("stainless steel", 1.15), ("cotton", 1.0), ("copper", 1.5)),
    ),
}

# A line's price factor depends on the brand's tier (TIERS' order): not a sum of two words.
LINES = {  # line: (names, probability, factor at each tier)
    "standard": (("",), 0.5, TIERS),
    "budget": (("Essentials", "Go", "Lite", "SE"), 0.18, (0.5, 0.58, 0.66, 0.74, 0.85, 1.0)),
    "pro": (("Pro", "Pro+", "Elite"), 0.2, (0.64, 0.92, 1.25, 1.7, 2.5, 3.9)),
    "max": (("Max", "Ultra"), 0.12, (0.66, 1.0, 1.45, 2.1, 3.2, 5.0)),
}
CONDITIONS = {  # name: (factor, probability)
    "New": (1.0, 0.74), "Open Box": (0.85, 0.04), "Renewed": (0.72, 0.08), "Used - Like New": (0.62, 0.05),
    "Used - Good": (0.5, 0.04), "For parts or not working": (0.18, 0.05),
}
CONDITION_TEXT = {  # how a description says it, when the title doesn't
    "Open Box": "This is an open-box unit: the packaging was opened, the product was never used.",
    "Renewed": "This product has been professionally refurbished, inspected and tested to work like new.",
    "Used - Like New": "Pre-owned and lightly used, in like-new cosmetic condition.",
    "Used - Good": "Pre-owned with visible signs of wear; fully functional.",
    "For parts or not working": "Sold as-is for parts or repair: it is not in working order and cannot be returned.",
}
WARRANTIES = {"90-day": (0.96, 0.15), "1-year": (1.0, 0.5), "2-year": (1.06, 0.2), "3-year": (1.1, 0.1),
              "5-year": (1.18, 0.05)}  # name: (factor, probability)
PACK_FORMS = ("{}-Pack", "Pack of {}", "Set of {}", "{} Count", "({} Pcs)")
PACKS = (2, 3, 4, 6, 10, 12)  # kinds under $40 come in any of these; dearer ones in 2-packs
PART = 0.22  # a replacement part alone costs this share of the whole product
ACCESSORIES = (  # bundled extras add dollars, so they weigh more on a cheap item than a dear one
    ("a carrying case", 15), ("a 2-year protection plan", 30), ("a spare battery and charger", 45),
    ("a cleaning kit", 8), ("a wall mount", 20), ("a premium gift box", 10), ("a travel bag", 25),
)
COLORS = ("Black", "White", "Gray", "Silver", "Navy Blue", "Red", "Green", "Rose Gold", "Beige")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
MARKETING = (
    "Designed for everyday use, it combines reliable performance with a clean, modern look.",
    "Setup takes minutes, and the quick-start guide walks you through every step.",
    "A compact, space-saving design fits easily on a shelf, a desk or in a drawer.",
    "The sleek matte finish resists fingerprints and scratches.",
    "Quiet operation means it will not disturb the rest of the household.",
    "Ships from a US warehouse in recyclable, frustration-free packaging.",
    "Backed by our satisfaction guarantee and friendly customer support by phone and email.",
    "It makes a thoughtful gift for birthdays, holidays and housewarmings.",
    "Every unit is inspected by our quality team before it leaves the factory.",
    "An ergonomic shape makes it comfortable to hold and easy to use for long sessions.",
    "Energy-saving standby helps cut power bills without getting in your way.",
    "Thousands of happy customers rate it among the best in its class.",
    "Lightweight and portable, it goes wherever you go: home, office, campsite or car.",
    "Built to last with reinforced joints and premium components throughout.",
    "Easy to clean: just wipe it down with a damp cloth.",
    "Compatible with most standard accessories, so you can use what you already own.",
    "Our engineers tested it for thousands of hours so you can rely on it day after day.",
    "Perfect for beginners and professionals alike.",
    "Note: colors may vary slightly from the photos due to screen settings.",
    "Please check the dimensions before ordering to make sure it fits your space.",
)
KINDS = {kind.noun: (category, kind) for category, (kinds, _, _) in CATEGORIES.items() for kind in kinds}


@dataclass(frozen=True)
class Facts:
    """What was drawn for one product: everything its price depends on, and a few things it doesn't."""

    category: str  # as in CATEGORIES, e.g. "Office_Products"
    kind: str  # a Kind's noun
    tier: int  # the brand's index in its category: 0 budget ... 5 luxury
    line: str  # a LINES key
    line_name: str
    material: str
    condition: str  # a CONDITIONS key
    warranty: str  # a WARRANTIES key
    value: float  # the spec number
    extra: float | None  # the second spec number, for kinds that have one
    pack: int  # units sold together
    part: bool  # only the kind's replacement part is for sale
    no_battery: bool  # sold without its battery (kinds that take one)
    accessory: str | None  # a bundled ACCESSORIES name
    host: str | None  # a pricier product this accessory names ("Aurelius Ultra"): no effect on price

    @property
    def brand(self) -> str:
        return CATEGORIES[self.category][1][self.tier]


@dataclass(frozen=True)
class Product:
    """A generated product in the Hub items schema; `pricer.items.Item(**p.model_dump())` reads it as an Item."""

    title: str
    category: str
    price: float
    full: str
    weight: float
    summary: str
    id: int

    def model_dump(self) -> dict:
        """The row, as `Item.model_dump` gives it (so the two are written and compared alike)."""
        return {**dataclasses.asdict(self), "prompt": None, "completion": None}

    def __repr__(self) -> str:
        return f"<{self.title} = ${self.price}>"


@dataclass(frozen=True)
class Listing:
    """One generated product, its noiseless value (the price its text implies) and its facts."""

    item: Product
    value: float
    facts: Facts


def generate(n: int, seed: int = 42, start_id: int = 0) -> list[Product]:
    """n Items drawn from one seeded stream: the same seed gives the same Items everywhere."""
    return [listing.item for listing in listings(n, seed, start_id)]


def listings(n: int, seed: int | str = 42, start_id: int = 0) -> list[Listing]:
    """`generate`'s products with their noiseless values and facts."""
    rng = random.Random(seed)
    return [_product(rng, start_id + i) for i in range(n)]


def make_splits(seed: int = 42, sizes: dict | None = None) -> tuple[list[Product], list[Product], list[Product]]:
    """(train, val, test) Items, SIZES rows by default; each split is its own seeded stream, so a
    split's items don't depend on the others' sizes (a 20,000-row train split starts with the
    4,000-row one, and the test items stay the same)."""
    return tuple([listing.item for listing in split] for split in split_listings(seed, sizes))


def split_listings(seed: int = 42, sizes: dict | None = None) -> tuple[list[Listing], ...]:
    """`make_splits` as Listings; ids run on across train, val and test."""
    sizes = _check_sizes(SIZES if sizes is None else sizes)
    splits, start = [], 0
    for split in ("train", "val", "test"):
        splits.append(listings(sizes[split], f"pricer-catalog/{seed}/{split}", start))
        start += sizes[split]
    return tuple(splits)


def product(seed: int | str, **fixed) -> Listing:
    """One product from its own seeded stream, with any of its Facts fixed: the same listing
    otherwise (same noise too), to see what a fact is worth.

        product(3).item.price, product(3, condition="For parts or not working").item.price
        product(3, kind="Portable SSD", value=500), product(3, kind="Portable SSD", value=2000)
    """
    unknown = sorted(set(fixed) - {f.name for f in dataclasses.fields(Facts)} - {"category"})
    if unknown:
        raise ValueError(f"product(): unknown fact(s) {unknown}; facts are "
                         f"{[f.name for f in dataclasses.fields(Facts) if f.name != 'category']}")
    if "kind" in fixed and fixed["kind"] not in KINDS:
        raise ValueError(f"product(): unknown kind {fixed['kind']!r}; kinds are {sorted(KINDS)}")
    listing = _draw(random.Random(seed), 0, fixed)
    if listing is None:
        raise ValueError(f"product({seed!r}, {fixed}): these facts price it outside "
                         f"{MIN_PRICE}-{MAX_PRICE} dollars; fix fewer facts or try another seed")
    return listing


def value_of(facts: Facts) -> float:
    """The price a listing's facts imply, before noise and the shop's cents."""
    kind = KINDS[facts.kind][1]
    materials = dict(CATEGORIES[facts.category][2])
    specs = _curve(kind.spec, facts.value) * (_curve(kind.extra, facts.extra) if kind.extra else 1.0)
    line = LINES[facts.line][2][_standing(facts.category, facts.kind, facts.tier)]
    unit = (kind.base * specs * line * materials[facts.material] ** kind.matter
            * (kind.battery if facts.no_battery else 1.0) * (PART if facts.part else 1.0))
    return (unit * facts.pack ** (kind.pack or 1.0) * CONDITIONS[facts.condition][0]
            * WARRANTIES[facts.warranty][0] + dict(ACCESSORIES).get(facts.accessory, 0))


def _standing(category: str, kind: str, tier: int) -> int:
    """A brand's tier for one kind of product: its overall tier, one up or down for some kinds (a
    speaker maker's earbuds, a budget brand's one well-made tool): a brand's word weighs differently
    next to each noun."""
    k = [kind_.noun for kind_ in CATEGORIES[category][0]].index(kind)
    return min(len(TIERS) - 1, max(0, tier + (0, 1, 0, -1)[(tier * 3 + k * 2 + len(category)) % 4]))


def _check_sizes(sizes: dict) -> dict:
    for split in ("train", "val", "test"):
        size = sizes.get(split) if isinstance(sizes, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"catalog sizes: {split!r} must be a whole number of rows >= 0, got {size!r} "
                             f"(e.g. {{'train': 4000, 'val': 200, 'test': 400}})")
    return sizes


def _product(rng: random.Random, id_: int) -> Listing:
    """One product; drawn again while its price is outside the window, so the tail has no pile-up."""
    while True:
        listing = _draw(rng, id_)
        if listing is not None:
            return listing


def _draw(rng: random.Random, id_: int, fixed: dict | None = None) -> Listing | None:
    """One product's facts, price and text; None when the price falls outside the window.

    The facts come from a fixed number of uniform draws, each fact from its own, so fixing one
    fact (`fixed`) leaves the others, and the noise, as they were."""
    fixed = fixed or {}
    u = [rng.random() for _ in range(19)]

    def pick(name, drawn):
        return fixed.get(name, drawn)

    category = _pick(u[0], list(CATEGORIES))
    category, kind = KINDS[pick("kind", _pick(u[1], CATEGORIES[category][0]).noun)]
    noun, (_, brands, materials) = kind.noun, CATEGORIES[category]
    tier = pick("tier", _pick(u[2], range(len(brands))))
    line = pick("line", _weighted(u[3], {k: v[1] for k, v in LINES.items()}))
    line_name = pick("line_name", _pick(u[4], LINES[line][0]))
    material = pick("material", _pick(u[5], materials)[0])
    condition = pick("condition", _weighted(u[6], {c: p for c, (_, p) in CONDITIONS.items()}))
    warranty = pick("warranty", _weighted(u[7], {w: p for w, (_, p) in WARRANTIES.items()}))
    value = pick("value", _draw_value(u[8], kind.spec))
    extra = pick("extra", _draw_value(u[9], kind.extra) if kind.extra else None)
    pack = pick("pack", _pick(u[11], PACKS if kind.base < 40 else PACKS[:1]) if kind.pack and u[10] < 0.3 else 1)
    part = pick("part", kind.part is not None and u[12] < 0.12 and condition == "New" and pack == 1)
    no_battery = pick("no_battery", kind.battery is not None and u[13] < 0.4 and not part)
    accessory = pick("accessory", _pick(u[15], ACCESSORIES)[0] if u[14] < 0.1 and not part else None)
    host = f"{_pick(u[16], brands)} {_pick(u[17], [n for names, _, _ in LINES.values() for n in names])}"
    host = pick("host", host.strip() if kind.host and u[18] < 0.5 else None)
    facts = Facts(category, noun, tier, line, line_name, material, condition, warranty, value, extra,
                  pack, part, no_battery, accessory, host)

    clean = value_of(facts)
    price = _shop_price(rng, clean * rng.lognormvariate(0, NOISE))
    if not MIN_PRICE <= price <= MAX_PRICE:
        return None
    weight = round(kind.weight * _curve(kind.spec, value) ** 0.5 * pack * (0.3 if part else 1.0)
                   * rng.uniform(0.9, 1.1), 2)
    title, description, details = _texts(rng, facts, kind, weight)
    pretty = category.replace("_", " ")
    summary = (f"Title: {title}\nCategory: {pretty}\nBrand: {facts.brand}\n"
               f"Description: {description}\nDetails: {details}")
    item = Product(title=title, category=pretty, price=price, full=f"{title}\n{description}\n{details}",
                weight=weight, summary=summary, id=id_)
    return Listing(item, clean, facts)


def _texts(rng: random.Random, facts: Facts, kind: Kind, weight: float) -> tuple[str, str, str]:
    """(title, description, details) as a seller writes them: the price-relevant facts first,
    each flip either in the title or only further down, then marketing and details."""
    noun, f = kind.noun, facts
    spec = _show(rng, kind.spec, f.value)
    extra = _show(rng, kind.extra, f.extra) if kind.extra else None
    name = " ".join(filter(None, (f.brand, f.line_name)))
    said = {fact: rng.random() < 0.6 for fact in ("condition", "battery", "accessory", "material")}
    tool = kind.battery is not None and kind.battery < 0.8  # the battery is a big part of the price

    style = rng.randrange(3)  # how a part-only listing says so: openly, "... Only", or further down
    if f.part and style == 0:
        head = f"Replacement {kind.part} for {name} {spec} {noun}"
    elif f.part and style == 1:
        head = f"{name} {spec} {noun} {kind.part} Only"
    elif f.part:
        head = f"{name} {noun} {kind.part}, {spec}"
    else:
        head = f"{name} {spec} {noun}" + (f" for {f.host} {kind.host}" if f.host else "")
    title = [head, extra, _capital(f.material) if said["material"] else None]
    if f.pack > 1:
        title.append("Twin Pack" if f.pack == 2 and rng.random() < 0.2 else rng.choice(PACK_FORMS).format(f.pack))
    if kind.battery is not None and not f.part and said["battery"]:
        title.append(rng.choice(
            (("Tool Only (Battery Not Included)", "Bare Tool, No Battery", "Battery Not Included") if tool
             else ("Batteries Not Included", "Requires 4 AA Batteries (Not Included)")) if f.no_battery
            else (("with Battery and Charger", "Battery Included", "Kit with Battery and Charger") if tool
                  else ("Batteries Included", "with Rechargeable Battery"))))
    if f.accessory and said["accessory"]:
        title.append(f"Bundle with {f.accessory.removeprefix('a ').title()}")
    title.append(rng.choice(COLORS) if rng.random() < 0.5 else None)
    title = ", ".join(filter(None, title))
    if f.condition != "New" and said["condition"]:
        title += f" ({f.condition})" if rng.random() < 0.5 else f" - {f.condition.title()}"

    if f.part:
        first = (f"This listing is for the {kind.part.lower()} only; the {noun} itself is not included. "
                 f"It fits the {name} {noun} with {spec}.")
    else:
        first = f"The {name} {noun}: {spec}" + (f", {extra}" if extra else "") + f", made of {f.material}."
    description = [first]
    if f.condition != "New" and (not said["condition"] and rng.random() < 0.7 or rng.random() < 0.3):
        description.append(CONDITION_TEXT[f.condition])
    if f.no_battery and not said["battery"] and rng.random() < 0.6:
        description.append(rng.choice((
            "Please note: the battery and charger are sold separately and are not in the box.",
            "This is the bare tool; a battery pack is not included with this purchase.",
            "Runs on the brand's battery packs, which you will need to buy separately.")) if tool else
            "Batteries are not included.")
    elif kind.battery is not None and not f.no_battery and not f.part and rng.random() < 0.4:
        description.append("The battery and charger are included in the box." if tool else "Batteries are included.")
    if f.accessory and not said["accessory"]:
        description.append(f"This bundle also includes {f.accessory}.")
    description += rng.sample(MARKETING, min(len(MARKETING), int(rng.expovariate(1 / 2.0))))

    battery = None
    if kind.battery is not None and not f.part:
        battery = "Battery: " + ("not included" if f.no_battery else "included")
    model = f"Item model number: {f.brand[:2].upper()}-{rng.randrange(100, 10000)}"
    date = f"Date first available: {rng.choice(MONTHS)} {rng.randrange(1, 29)}, {rng.randrange(2018, 2026)}"
    details = [model if rng.random() < 0.6 else None, f"Weight: {weight} pounds", f"Material: {f.material}",
               f"Warranty: {f.warranty} limited", f"Condition: {f.condition}", battery,
               f"Units: {f.pack}" if f.pack > 1 else None, date if rng.random() < 0.5 else None]
    return title, " ".join(description), "; ".join(filter(None, details))


def _draw_value(u: float, spec: Spec) -> float:
    """A spec value from a uniform draw: one of its steps, or log-uniform over its span, printed
    the way a shop would."""
    lo, hi = spec.span
    return _pick(u, spec.steps) if spec.steps else _nice(lo * (hi / lo) ** u)


def _curve(spec: Spec, value: float) -> float:
    """The price factor of a spec value: (value / geometric middle of the span) ** exponent."""
    lo, hi = spec.span
    return (value / (lo * hi) ** 0.5) ** spec.exponent


def _show(rng: random.Random, spec: Spec, value: float) -> str:
    """The value in one of the spec's unit forms that apply to it."""
    template, factor, _ = rng.choice([form for form in spec.forms if value >= form[2]])
    if factor == 1.0:
        return template.format(int(value) if value == int(value) else value)
    return template.format(_trim(value * factor))


def _trim(x: float) -> str:
    """A converted number as a label prints it: at most one decimal, none when whole."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _nice(value: float) -> int:
    """A spec number as a shop would print it: whole, and two significant figures from 10 up."""
    digits = len(str(int(value))) - 2
    return max(1, int(round(value, -digits)) if digits > 0 else round(value))


def _pick(u: float, options):
    """The option a uniform draw u in [0, 1) lands on: one draw whatever the options."""
    return options[min(int(u * len(options)), len(options) - 1)]


def _weighted(u: float, options: dict) -> str:
    """The key a uniform draw lands on, each key taking its weight's share of [0, 1)."""
    total, edge = sum(options.values()), 0.0
    for key, weight in options.items():
        edge += weight / total
        if u < edge:
            return key
    return key


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
