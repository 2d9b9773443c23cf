"""Products in the course's own formats, typed from rows of its public repository (ed-donner/llm_engineering):
week6/fine_tune_train.jsonl, week6/community-contributions/{bharat_puri/train.jsonl, elikeyz/train.jsonl,
Collins/ft_data/train.jsonl}, shortened. `write_style(folder, style)` writes a train / val / test folder of one
style; the test files in tests/test_dataprep.py read them as a user's folder."""

import json
from pathlib import Path

# (title, category, price, description, features, details): real listings, texts cut short
PRODUCTS = [
    ("Delphi FG0166 Fuel Pump Module", "Automotive", 226.95,
     "Delphi brings 80 years of OE Heritage into each Delphi pump, ensuring quality and fitment for each Delphi part.",
     ["Rigorous OE-testing ensures the pump can withstand extreme temperatures"],
     {"Brand": "Delphi", "Item Weight": "2.2 Pounds", "Part Number": "FG0166"}),
    ("Power Stop Rear Z36 Truck and Tow Brake Kit with Calipers", "Automotive", 506.98,
     "The Power Stop Z36 Truck & Tow Performance brake kit provides the superior stopping power demanded by those who tow.",
     ["Dust-free braking performance", "Z36 Carbon-Fiber Ceramic formula"],
     {"Brand": "Power Stop", "Best Sellers Rank": "#1,204 in Automotive"}),
    ("Shabby Restore Silver Chrome Knob Bolt Fittings for Ceramic & Glass Pulls", "Tools & Home Improvement", 1.95,
     "Silver Chrome Knob Fitting for ceramic and glass knobs & pulls. Knobs are NOT included.",
     ["Screw Size 3", "1 Washer, 1 Nut, 1 Back Plate"], {"Brand": "Shabby Restore"}),
    ("Castle X CX200 Liberty Dual Sport Helmet in Matte Charcoal, Size XX-Large", "Automotive", 165.99,
     "Aggressive, modern shell design created with CAD technology. DOT & ECE Approved.",
     ["Drop down sun visor system", "Removable interior padding"], {"Brand": "Castle X", "Size": "XX-Large"}),
    ("KNIPEX Tools - Diagonal Flush Cutter for Plastics, 45 Degree Angle Red", "Tools & Home Improvement", 52.99,
     "KNIPEX 72 11 160 Diagonal Pliers for Flush Cut Plastics 45 Angled.",
     ["Handle Material Plastic", "Weight 156 Grams"], {"Brand": "KNIPEX", "Item model number": "7211160"}),
    ("Latin Percussion LP351 Wah Shaker", "Musical Instruments", 18.99, "New shaker sound with multiple effects",
     ["Place both palms over ends and shake", "Vary sound by cupping and lifting hands at shaker end"],
     {"Brand": "Latin Percussion"}),
    ("Pirastro No.1 Violin Strings E-Wire Steel/Chrome Steel Wound 4/4 Ball End", "Musical Instruments", 24.97,
     "Tension: Medium", ["Excellent for its brilliant and smooth and exceptional playability", "Made in Germany"],
     {"Brand": "Pirastro"}),
    ("Buckle-Down Guitar Strap Zombie Skulls Sketch 2 Inches Wide", "Musical Instruments", 21.95,
     "Proudly hand-crafted in America, Buckle-Down's premium guitar straps are hand-built with hearty materials.",
     ["100% Polyester", "Made in the USA and Imported"], {"Brand": "Buckle-Down"}),
    ("Stark Portable 5 cu Ft Electric Concrete Cement Mixer Machine Freestanding 1/2 HP", "Tools & Home Improvement",
     349.95, "Heavy duty motor with heavy duty direct drive gearbox, 23 RPM improve running time and stability.",
     ["Safety Lock", "2 Wheels for Easy Moving"], {"Brand": "Stark USA", "Color": "Orange"}),
    ("Dynasty Door Closer Heavy Duty Commercial Grade Hydraulic Adjustable Spring Door Closer", "Tools & Home Improvement",
     144.95, "Non-Handed for Regular Arm, Top-Jamb or Parallel Arm Installation. UL Listed for Fire Door Assemblies.",
     ["Grade 1, ANSI 156.4 Heavy Duty Door Closer"], {"Brand": "Dynasty Hardware", "Material": "Aluminum"}),
]
SPLITS = {"train": PRODUCTS[:6], "val": PRODUCTS[6:8], "test": PRODUCTS[8:]}
QUESTION_2024 = "How much does this cost to the nearest dollar?"  # the course's 2024 question
STYLES = ("2024 prompts", "items", "raw listings", "punctuation-stripped", "prompt rows", "chat rows")


def summary_2025(title, category, description, features, details):
    """The course's 2025 summary layout (its preprocessor's Title / Category / Brand / Description / Details)."""
    return (f"Title: {title}\nCategory: {category}\nBrand: {details['Brand']}\nDescription: {description}\n"
            f"Details: {'; '.join(features)}")


def row(style: str, product) -> dict:
    """One product as `style` writes it."""
    title, category, price, description, features, details = product
    text_2024 = f"{title}\n{description} {' '.join(features)}"
    if style == "2024 prompts":  # the course's 2024 Item.prompt: title first, no label, price in the text
        return {"text": f"{QUESTION_2024}\n\n{text_2024}\n\nPrice is ${round(price)}.00", "price": price}
    if style == "items":
        return {"title": title, "category": category, "price": price,
                "summary": summary_2025(title, category, description, features, details)}
    if style == "raw listings":  # Amazon Reviews 2023 metadata: lists, and details as a JSON string
        return {"title": title, "main_category": category, "price": str(price), "description": [description],
                "features": features, "details": json.dumps(details)}
    if style == "punctuation-stripped":  # the 2024 scrub applied to a 2025 summary: no colons
        summary = summary_2025(title, category, description, features, details).replace(":", "")
        return {"title": title, "price": price, "summary": summary}
    if style == "prompt rows":
        return {"prompt": f"{QUESTION_2024}\n\n{text_2024}\n\nPrice is $", "completion": f"{round(price)}.00"}
    if style == "chat rows":  # OpenAI fine-tuning rows, as week 6 writes them
        return {"messages": [{"role": "system", "content": "You estimate prices of items. Reply only with the price"},
                             {"role": "user", "content": f"How much does this cost?\n\n{text_2024}"},
                             {"role": "assistant", "content": f"Price is ${price:.2f}"}]}
    raise ValueError(style)


def write_style(folder: Path, style: str, val_name: str = "val") -> Path:
    """A train / val / test folder of `style` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, products in SPLITS.items():
        name = val_name if split == "val" else split
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(row(style, p)) + "\n" for p in products))
    return folder
