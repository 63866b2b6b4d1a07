"""A generated near-miss / paraphrase pair set for the semantic cache, by kind.

Each *frame* is a question written in two or three interchangeable surface forms (paraphrases of
one another) with one slot ``{v}`` that carries what a near-miss changes, and optional filler
slots (``{x}``, ``{y}``, ...) drawn from small lists. For a frame:

* a **near-miss** pair fills ``{v}`` with the two sides of a contrast (``up``/``down``, ``7 am``/
  ``7 pm``, ``Lyon``-``Milan`` swapped, ...), in the same or in different surface forms;
* a **paraphrase** pair keeps the meaning: two surface forms, or one form with a variant that means
  the same (``isn't``/``isn’t``, ``-20``/``−20``, ``7 pm``/``19:00``, ``cheaper``/``less expensive``).

Which side is cached (``text_a``) and which is looked up (``text_b``) is drawn at random, so a
set asks every kind of question both ways. Every text occurs in at most one pair, so a lookup can
only be served its own pair's prompt or an unrelated one. Output rows are
``{text_a, text_b, label, kind}``; near-miss kinds are named ``<kind>`` (label 0) and their
paraphrases ``<kind>.paraphrase`` (label 1), which ``bench cache --pairs`` breaks down per kind.

``python -m lean_benchmarks.cache_nearmiss --seed 0 --out /tmp/nearmiss.jsonl``
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["KINDS", "Frame", "NearMissPair", "generate_pairs", "main", "write_pairs"]


@dataclass(frozen=True)
class NearMissPair:
    text_a: str
    text_b: str
    label: int
    """1 = the same request (a paraphrase), 0 = a near-miss that must not be served."""
    kind: str


@dataclass(frozen=True)
class Frame:
    forms: tuple[str, ...]
    """Interchangeable phrasings, each with ``{v}`` and the same filler slots."""
    contrasts: tuple[tuple[str, str], ...]
    """Values of ``{v}`` that change the request (a near-miss puts one on each side)."""
    same: tuple[tuple[str, str], ...] = ()
    """Values of ``{v}`` that mean the same (a paraphrase may put one on each side)."""
    fillers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    swap: tuple[str, str] | None = None
    """For order kinds: two filler slots whose values a near-miss exchanges (``{v}`` unused)."""


_CITIES = ("Lyon", "Milan", "Denver", "Seattle", "Porto", "Madrid", "Prague", "Vienna", "Austin", "Dallas",
           "Krakow", "Bergen")
_CODES = ("GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "SGD")
_CONVERT = ("Celsius", "Fahrenheit", "miles", "kilometres", "cups", "grams", "ounces", "millilitres")
_FILE_TYPES = ("PDF", "DOCX", "PNG", "JPEG", "CSV", "XLSX", "MP4", "GIF")
_ANIMALS = ("horse", "cow", "lion", "tiger", "dolphin", "shark", "moose", "bison", "camel", "zebra")
_NUMBERS = ("12", "4", "36", "9", "150", "25", "7", "84", "3", "18")

KINDS: dict[str, tuple[Frame, ...]] = {
    "direction": (
        Frame(("Should I {v} the {x} on my {y} at night?", "Is it a good idea to {v} the {x} on my {y} at night?",
               "Would it help to {v} the {x} on my {y} at night?"),
              (("turn up", "turn down"), ("increase", "decrease"), ("raise", "lower"), ("turn on", "turn off")),
              fillers={"x": ("brightness", "volume", "fan speed", "heating"),
                       "y": ("laptop", "phone", "monitor", "thermostat", "air purifier")}),
        Frame(("What happens to {x} when interest rates go {v}?", "How do {x} react when interest rates go {v}?",
               "What happens to {x} if interest rates go {v}?"),
              (("up", "down"),), fillers={"x": ("bond prices", "house prices", "savings accounts", "stock prices",
                                                 "mortgage payments", "pension funds")}),
        Frame(("Is it better to {x} {v} {y}?", "Should I {x} {v} {y}?", "Is it a good idea to {x} {v} {y}?"),
              (("before", "after"),),
              fillers={"x": ("eat", "stretch", "shower", "drink coffee", "take a nap"),
                       "y": ("a run", "an exam", "a workout", "a long flight", "a job interview")}),
        Frame(("Are people {v} {x} allowed to {y}?", "Can people {v} {x} {y}?",
               "Is it legal for people {v} {x} to {y}?"),
              (("over", "under"), ("above", "below"), ("older than", "younger than")),
              fillers={"x": ("16", "21", "65", "70"),
                       "y": ("rent a car", "get a tattoo", "donate blood", "buy fireworks", "sign a lease")}),
        Frame(("What should I do if my {x} is {v} {y}?", "My {x} is {v} {y}, what should I do?",
               "What does it mean if my {x} is {v} {y}?"),
              (("above", "below"), ("over", "under"), ("higher than", "lower than")),
              fillers={"x": ("blood sugar", "heart rate", "credit score", "resting pulse"),
                       "y": ("140", "90", "600", "55")}),
        Frame(("How do I {v} {x} on my {y}?", "How can I {v} {x} on my {y}?", "What are the steps to {v} {x} on my {y}?"),
              (("enable", "disable"), ("zoom in on", "zoom out of"), ("log in to", "log out of"),
               ("sign in to", "sign out of")),
              fillers={"x": ("the guest account", "cloud backup", "the work profile", "location sharing"),
                       "y": ("tablet", "smart TV", "work laptop", "game console")}),
        Frame(("Does {x} {v} the risk of {y}?", "Can {x} {v} the risk of {y}?",
               "Is it true that {x} can {v} the risk of {y}?"),
              (("increase", "decrease"), ("raise", "lower"), ("increase", "reduce")),
              fillers={"x": ("coffee", "red wine", "running", "sugar", "napping"),
                       "y": ("gout", "heart disease", "a stroke", "kidney stones", "migraines")}),
        Frame(("Is now a good time to {v} {x}?", "Is this a good moment to {v} {x}?", "Should I {v} {x} right now?"),
              (("buy", "sell"),), fillers={"x": ("gold", "bitcoin", "index funds", "my house", "bonds", "silver")}),
        Frame(("How do I {v} my {x} deployment?", "What is the way to {v} my {x} deployment?",
               "How can I {v} my {x} deployment?"),
              (("scale up", "scale down"), ("scale out", "scale in"), ("upgrade", "downgrade")),
              fillers={"x": ("Kubernetes", "Redis", "Kafka", "Elasticsearch", "database")}),
        Frame(("How do I {v} a {x} file?", "How can I {v} a {x} file?", "What's the easiest way to {v} a {x} file?"),
              (("import contacts from", "export contacts to"), ("upload photos from", "download photos to"),
               ("import bookmarks from", "export bookmarks to")),
              fillers={"x": ("CSV", "JSON", "vCard", "backup")}),
    ),
    "comparative": (
        Frame(("Is {x} {v} than {y}?", "Would you say {x} is {v} than {y}?", "Is {x} generally {v} than {y}?"),
              (("faster", "slower"), ("cheaper", "more expensive"), ("better", "worse"), ("safer", "more dangerous"),
               ("harder", "easier"), ("bigger", "smaller"), ("less expensive", "more expensive")),
              same=(("cheaper", "less expensive"), ("safer", "less dangerous"), ("easier", "less difficult")),
              fillers={"x": ("a train", "a heat pump", "renting", "an SSD", "solar power", "a ferry"),
                       "y": ("a plane", "a gas boiler", "buying", "a hard drive", "wind power", "a bus")}),
        Frame(("Which is {v}, {x} or {y}?", "Between {x} and {y}, which is {v}?", "Which one is {v}: {x} or {y}?"),
              (("better", "worse"), ("faster", "slower"), ("cheaper", "pricier"), ("healthier", "less healthy"),
               ("stronger", "weaker"), ("warmer", "colder")),
              same=(("cheaper", "less expensive"),),
              fillers={"x": ("wool", "oat milk", "a laptop", "brown rice", "cast iron"),
                       "y": ("cotton", "soy milk", "a tablet", "quinoa", "stainless steel")}),
        Frame(("What is the {v} way to {x}?", "What's the {v} way to {x}?", "Which is the {v} way to {x}?"),
              (("fastest", "slowest"), ("cheapest", "most expensive"), ("best", "worst"), ("safest", "riskiest"),
               ("easiest", "hardest")),
              fillers={"x": ("get to the airport", "ship a parcel abroad", "heat a small room", "learn to type",
                             "send money overseas", "clean a cast iron pan")}),
    ),
    "antonym": (
        Frame(("Is it {v} to {x}?", "Would it be {v} to {x}?", "Is it really {v} to {x}?"),
              (("safe", "dangerous"), ("good", "bad"), ("easy", "hard"), ("cheap", "expensive"), ("common", "rare"),
               ("wise", "foolish"), ("polite", "rude")),
              fillers={"x": ("eat raw cookie dough", "swim after eating", "drive with a cold", "reuse plastic bottles",
                             "sleep with wet hair", "leave a laptop charging overnight")}),
        Frame(("Why is my {x} so {v}?", "What makes my {x} so {v}?", "Why does my {x} get so {v}?"),
              (("hot", "cold"), ("loud", "quiet"), ("slow", "fast"), ("heavy", "light"), ("dry", "wet"),
               ("bright", "dark"), ("tight", "loose"), ("soft", "hard")),
              fillers={"x": ("car", "laptop", "bedroom", "water heater", "phone", "garden soil")}),
        Frame(("Are {x} {v} for {y}?", "Is it true that {x} are {v} for {y}?", "Are {x} actually {v} for {y}?"),
              (("good", "bad"), ("healthy", "harmful"), ("harmless", "harmful"), ("useful", "useless")),
              fillers={"x": ("eggs", "bananas", "potatoes", "grapes", "almonds"),
                       "y": ("dogs", "cats", "toddlers", "horses", "rabbits")}),
        Frame(("Should I use {v} water to {x}?", "Is it better to use {v} water to {x}?", "Do I need {v} water to {x}?"),
              (("hot", "cold"), ("warm", "cool"), ("hard", "soft")),
              fillers={"x": ("wash jeans", "rinse rice", "clean a wound", "soak beans", "brew green tea")}),
        Frame(("Is a {v} {x} a sign of {y}?", "Can a {v} {x} be a sign of {y}?", "Does a {v} {x} point to {y}?"),
              (("high", "low"), ("fast", "slow"), ("strong", "weak"), ("thick", "thin")),
              fillers={"x": ("pulse", "voice", "appetite", "stream"), "y": ("dehydration", "stress", "infection")}),
    ),
    "prefix_negation": (
        Frame(("Is {x} {v} to {y}?", "Is {x} actually {v} to {y}?", "Would you say {x} is {v} to {y}?"),
              (("toxic", "non-toxic"), ("toxic", "nontoxic"), ("poisonous", "non-poisonous")),
              same=(("non-toxic", "nontoxic"), ("non-toxic", "not toxic"), ("non-poisonous", "nonpoisonous")),
              fillers={"x": ("aloe vera", "lavender", "a peace lily", "basil", "a spider plant", "mint"),
                       "y": ("cats", "dogs", "rabbits", "parrots")}),
        Frame(("Is it {v} to {x} in {y}?", "Is it actually {v} to {x} in {y}?", "Would it be {v} to {x} in {y}?"),
              (("legal", "illegal"), ("lawful", "unlawful")),
              fillers={"x": ("fly a drone", "collect rainwater", "drive barefoot", "carry pepper spray"),
                       "y": ("Japan", "Germany", "Ohio", "Canada", "Norway")}),
        Frame(("Is it {v} to {x}?", "Would it be {v} to {x}?", "Is it really {v} to {x}?"),
              (("possible", "impossible"), ("safe", "unsafe"), ("healthy", "unhealthy"), ("ethical", "unethical"),
               ("advisable", "inadvisable"), ("reasonable", "unreasonable")),
              fillers={"x": ("recover deleted photos", "run a marathon without training", "eat week-old rice",
                             "fast for three days", "reuse coffee grounds")}),
        Frame(("How do I {v} {x} on {y}?", "How can I {v} {x} on {y}?", "What's the way to {v} {x} on {y}?"),
              (("install", "uninstall"), ("lock", "unlock"), ("mute", "unmute"), ("block", "unblock"),
               ("connect", "disconnect")),
              fillers={"x": ("Zoom", "Steam", "Docker", "Spotify", "Slack"), "y": ("Windows 11", "macOS", "Ubuntu")}),
    ),
    "negation": (
        Frame(("Why {v} my {x} charging?", "Why {v} my {x} charging at all?"),
              (("is", "isn't"), ("is", "isn’t"), ("is", "isnʼt"), ("is", "isn＇t")),
              same=(("isn't", "isn’t"), ("isn't", "isnʼt"), ("isn’t", "isn＇t")),
              fillers={"x": ("phone", "smartwatch", "laptop", "electric toothbrush", "Bluetooth speaker")}),
        Frame(("Why {v} {x} work on {y}?", "Why {v} {x} work on my {y}?"),
              (("does", "doesn't"), ("does", "doesn’t"), ("does", "does not")),
              same=(("doesn't", "doesn’t"), ("doesn’t", "does not")),
              fillers={"x": ("AirDrop", "Netflix", "Docker", "the VPN"), "y": ("Linux", "Android", "Chromebook")}),
        Frame(("Can I {x} {v} {y}?", "Is it possible to {x} {v} {y}?", "Can you {x} {v} {y}?"),
              (("with", "without"),),
              fillers={"x": ("bake bread", "make pancakes", "brew beer", "make ice cream"),
                       "y": ("yeast", "eggs", "a mixer", "sugar")}),
        Frame(("What happens if I {v} {x}?", "What will happen if I {v} {x}?", "What happens when I {v} {x}?"),
              (("update", "never update"), ("stretch before", "don't stretch before"),
               ("stretch before", "don’t stretch before"), ("pay", "do not pay")),
              fillers={"x": ("my router firmware", "running", "my parking ticket", "my credit card bill")}),
        Frame(("{v} I {x} before {y}?", "{v} I really {x} before {y}?"),
              (("Should", "Shouldn't"), ("Can", "Can’t"), ("Should", "Shouldn’t")),
              fillers={"x": ("eat", "sleep", "drink water", "warm up"), "y": ("swimming", "a blood test", "a match")}),
    ),
    "signed_number": (
        Frame(("What should I wear {x} at {v} degrees{y}?", "How should I dress {x} at {v} degrees{y}?",
               "What clothes do I need {x} at {v} degrees{y}?"),
              (("-20", "20"), ("−15", "15"), ("minus 10", "10"), ("-5", "5"), ("–30", "30")),
              same=(("-20", "−20"), ("-15", "minus 15"), ("−5", "–5"), ("-12", "negative 12")),
              fillers={"x": ("to go skiing", "for a walk", "to work", "for a run", "for a hike", "for cycling", "for fishing",
                             "to walk the dog", "for a picnic", "for camping"),
                       "y": ("", " in the wind", " at night")}),
        Frame(("Will a {x} still work at {v}°C{y}?", "Does a {x} keep working at {v}°C{y}?", "Can a {x} work at {v}°C{y}?"),
              (("-40", "40"), ("−25", "25"), ("-10", "10")),
              same=(("-40", "−40"), ("-25", "－25")),
              fillers={"x": ("car battery", "lithium battery", "smartphone", "diesel engine", "LCD screen", "heat pump",
                             "drone", "e-bike", "laptop", "solar panel"),
                       "y": ("", " overnight")}),
        Frame(("My {x} shows {v}, what does that mean?", "What does it mean when my {x} shows {v}?",
               "Why does my {x} show {v}?"),
              (("-$250", "$250"), ("−€80", "€80"), ("-3 dB", "3 dB"), ("-12", "12")),
              same=(("-$250", "−$250"),),
              fillers={"x": ("bank app", "account balance", "signal meter", "card statement", "budget app", "meter",
                             "dashboard", "spreadsheet")}),
        Frame(("What is the {x} of {v}?", "What's the {x} of {v}?", "Calculate the {x} of {v}."),
              (("-27", "27"), ("-64", "64"), ("−125", "125"), ("-8", "8")),
              same=(("-27", "−27"), ("-64", "minus 64"), ("-8", "−8")),
              fillers={"x": ("cube root", "absolute value", "square", "reciprocal", "cube", "floor", "sign", "negation")}),
    ),
    "currency": (
        Frame(("Is {v} a good price for a {x}{y}?", "Would {v} be a fair price for a {x}{y}?",
               "Is paying {v} for a {x}{y} reasonable?"),
              (("$500", "€500"), ("$500", "£500"), ("€20", "¥20"), ("£80", "€80"), ("500 dollars", "500 euros"),
               ("₹2000", "$2000")),
              same=(("$500", "500 dollars"), ("€20", "20 euros"), ("$1,000", "$1000")),
              fillers={"x": ("used bike", "used laptop", "pair of running shoes", "night in a hotel", "guitar", "sofa",
                             "second-hand camera", "weekend course", "winter coat", "road bike", "tent", "violin"),
                       "y": ("", " in Berlin", " this year", " online")}),
        Frame(("Can I live on {v} a month in {x}{y}?", "Is {v} a month enough to live in {x}{y}?",
               "Could I get by on {v} a month in {x}{y}?"),
              (("$1500", "€1500"), ("£900", "$900"), ("€2,000", "£2,000")),
              same=(("$1500", "1500 dollars"), ("€2,000", "€2000")),
              fillers={"x": ("Lisbon", "Bangkok", "Warsaw", "Mexico City", "Athens", "Hanoi", "Tbilisi", "Bogota",
                             "Sofia", "Valencia"),
                       "y": ("", " as a student", " with a car")}),
    ),
    "order": (
        Frame(("How long is the drive from {x} to {y}?", "How long does it take to drive from {x} to {y}?",
               "What's the driving time from {x} to {y}?"),
              (), fillers={"x": _CITIES, "y": _CITIES}, swap=("x", "y")),
        Frame(("Is there a direct {x}-{y} train?", "Does a direct {x}-{y} train exist?", "Is there a direct train {x}-{y}?"),
              (), fillers={"x": _CITIES, "y": _CITIES}, swap=("x", "y")),
        Frame(("What is the {x}/{y} exchange rate today?", "What's the {x}/{y} rate today?",
               "Where can I see today's {x}/{y} rate?"),
              (), fillers={"x": _CODES, "y": _CODES}, swap=("x", "y")),
        Frame(("How do I convert {x} to {y}?", "What's the easiest way to convert {x} to {y}?",
               "How can I turn {x} into {y}?"),
              (), fillers={"x": _CONVERT + _FILE_TYPES, "y": _CONVERT + _FILE_TYPES}, swap=("x", "y")),
        Frame(("Is a {x} heavier than a {y}?", "Does a {x} weigh more than a {y}?", "Would a {x} be heavier than a {y}?"),
              (), fillers={"x": _ANIMALS, "y": _ANIMALS}, swap=("x", "y")),
    ),
    "number_order": (
        Frame(("What is {x} divided by {y}?", "What's {x} divided by {y}?", "What do you get when you divide {x} by {y}?"),
              (), fillers={"x": _NUMBERS, "y": _NUMBERS}, swap=("x", "y")),
        Frame(("What is {x} to the power of {y}?", "What's {x} to the power of {y}?", "Calculate {x} to the power of {y}."),
              (), fillers={"x": ("2", "3", "5", "10", "4"), "y": ("2", "3", "5", "10", "4")}, swap=("x", "y")),
        Frame(("How many centimetres is {x} feet {y} inches?", "What is {x} feet {y} inches in centimetres?",
               "Convert {x} feet {y} inches to centimetres."),
              (), fillers={"x": ("4", "5", "6", "7"), "y": ("4", "5", "6", "7", "8", "9")}, swap=("x", "y")),
        Frame(("How much will I have if I invest $5000 at {x}% for {y} years?",
               "If I invest $5000 at {x}% for {y} years, how much will I have?",
               "What does $5000 grow to at {x}% over {y} years?"),
              (), fillers={"x": ("3", "4", "6", "8", "10"), "y": ("3", "4", "6", "8", "10")}, swap=("x", "y")),
        Frame(("What is {x} minus {y}?", "What's {x} minus {y}?", "Calculate {x} minus {y}."),
              (), fillers={"x": _NUMBERS, "y": _NUMBERS}, swap=("x", "y")),
    ),
    "time_of_day": (
        Frame(("Is it a bad idea to drink {x} at {v}{y}?", "Should I avoid drinking {x} at {v}{y}?",
               "Will drinking {x} at {v}{y} keep me awake?"),
              (("7 am", "7 pm"), ("9am", "9pm"), ("6:30 am", "6:30 pm"), ("07:00", "19:00"), ("noon", "midnight"),
               ("11 pm", "11 am")),
              same=(("7 pm", "7 p.m."), ("7 pm", "19:00"), ("9am", "9 AM"), ("9 am", "09:00"), ("noon", "12:00")),
              fillers={"x": ("coffee", "black tea", "an energy drink", "cola", "espresso", "green tea", "a latte", "mate"),
                       "y": ("", " on a weekday", " before a flight")}),
        Frame(("Can I check in to my {x} at {v}{y}?", "Is it possible to check in to my {x} at {v}{y}?",
               "Will my {x} let me check in at {v}{y}?"),
              (("2 am", "2 pm"), ("10:00", "22:00"), ("3pm", "3am")),
              same=(("2 pm", "14:00"), ("3pm", "3 p.m."), ("10 pm", "22:00")),
              fillers={"x": ("hotel", "hostel", "guesthouse", "apartment", "cabin", "motel"),
                       "y": ("", " on Sunday", " tomorrow")}),
        Frame(("Is it safe to go running at {v} in {x}?", "Is running at {v} in {x} safe?",
               "Would it be safe to go for a run at {v} in {x}?"),
              (("5 am", "5 pm"), ("8:15 pm", "8:15 am"), ("06:00", "18:00")),
              same=(("5 pm", "17:00"), ("8:15 pm", "20:15")),
              fillers={"x": ("the park", "winter", "the city", "summer", "the forest", "the suburbs", "autumn", "town")}),
    ),
    "language_version": (
        Frame(("How do I {x} in {v}{y}?", "What's the best way to {x} in {v}{y}?", "How can I {x} using {v}{y}?"),
              (("C", "C++"), ("C", "C#"), ("C++", "C#"), ("F#", "C#"), ("Python 2", "Python 3"), ("Java 8", "Java 17"),
               ("Vue 2", "Vue 3"), ("Python 3.8", "Python 3.12")),
              same=(("Python 3", "Python3"), ("C#", "c#"), ("Java 8", "Java8")),
              fillers={"x": ("read a file line by line", "sort a dictionary by value", "parse JSON",
                             "reverse a string", "start a thread", "format a date"),
                       "y": ("", " without a library", " quickly", " on Windows")}),
        Frame(("Is {v} still supported by {x}{y}?", "Does {x} still support {v}{y}?", "Is {v} still supported on {x}{y}?"),
              (("Python 2", "Python 3"), ("TLS 1.2", "TLS 1.3"), ("IPv4", "IPv6"), ("Windows 10", "Windows 11"),
               ("PHP 7", "PHP 8"), ("Node 18", "Node 20")),
              same=(("Windows 10", "Windows10"),),
              fillers={"x": ("AWS", "Azure", "Heroku", "Vercel", "Netlify", "Debian", "Docker Hub", "Cloudflare",
                             "GitHub Actions", "Firebase"),
                       "y": ("", " in 2025")}),
    ),
    "unit": (
        Frame(("Is a {v} {x} enough for {y}?", "Will a {v} {x} be enough for {y}?", "Would a {v} {x} suffice for {y}?"),
              (("64 GB", "64 TB"), ("500 MB", "500 GB"), ("2 TB", "2 GB"), ("16 GB", "16 MB")),
              same=(("64 GB", "64GB"), ("500 MB", "500 megabyte"), ("2 TB", "2 terabyte")),
              fillers={"x": ("SSD", "memory card", "USB stick", "cloud plan", "hard drive", "phone"),
                       "y": ("my photos", "a video library", "gaming", "backups", "a music collection")}),
        Frame(("How long does it take to {x} {v}?", "How much time does it take to {x} {v}?",
               "About how long would it take to {x} {v}?"),
              (("5 km", "5 miles"), ("10 miles", "10 km"), ("400 m", "400 ft"), ("20 km", "20 miles")),
              same=(("5 km", "5 kilometres"), ("10 miles", "10 mi"), ("400 m", "400 metres")),
              fillers={"x": ("walk", "cycle", "run", "swim", "drive", "row", "hike", "skate")}),
        Frame(("How many calories are in {v} of {x}?", "How many calories does {v} of {x} have?",
               "What is the calorie count of {v} of {x}?"),
              (("100 g", "100 oz"), ("1 cup", "1 tablespoon"), ("2 teaspoons", "2 tablespoons"), ("1 kg", "1 lb"),
               ("250 ml", "250 litres")),
              same=(("100 g", "100 grams"), ("1 kg", "1 kilogram"), ("2 teaspoons", "2 tsp"), ("250 ml", "250 millilitres")),
              fillers={"x": ("rice", "oats", "olive oil", "honey", "almonds", "lentils", "butter", "sugar")}),
        Frame(("Can I keep {x} in the fridge for {v}?", "Is it okay to store {x} in the fridge for {v}?",
               "Will {x} last {v} in the fridge?"),
              (("3 days", "3 weeks"), ("2 hours", "2 days"), ("5 days", "5 months"), ("4 weeks", "4 months")),
              same=(("2 hours", "2 hrs"), ("3 days", "3 day's time")),
              fillers={"x": ("cooked rice", "soup", "opened wine", "fresh pasta", "hummus", "boiled eggs", "salsa")}),
    ),
    "relative_date": (
        Frame(("Is the {x} open {v}?", "Will the {x} be open {v}?", "Does the {x} open {v}?"),
              (("today", "tomorrow"), ("on Sunday", "on Saturday"), ("this weekend", "next weekend"),
               ("tonight", "tomorrow night"), ("on Monday", "on Tuesday")),
              same=(("tonight", "this evening"), ("on Sunday", "this Sunday"), ("next weekend", "the coming weekend")),
              fillers={"x": ("post office", "library", "pharmacy", "museum", "bank", "gym", "town hall", "pool")}),
        Frame(("What did {x} announce {v}?", "What was announced by {x} {v}?", "What news did {x} share {v}?"),
              (("yesterday", "last week"), ("last month", "last year"), ("this morning", "yesterday"),
               ("last week", "this week"), ("3 days ago", "3 weeks ago")),
              same=(("last week", "in the past week"), ("3 days ago", "three days ago")),
              fillers={"x": ("Apple", "Nvidia", "the ECB", "the Fed", "Spotify", "NASA", "Toyota", "the WHO")}),
        Frame(("Will it rain in {x} {v}?", "Is rain expected in {x} {v}?", "Should I expect rain in {x} {v}?"),
              (("tomorrow", "the day after tomorrow"), ("this afternoon", "tomorrow afternoon"),
               ("next week", "this week"), ("on Friday", "on Thursday")),
              same=(("this afternoon", "today afternoon"), ("next week", "the coming week")),
              fillers={"x": _CITIES}),
    ),
}
"""The frames of each kind (order kinds swap two filler slots instead of filling ``{v}``)."""


def _fill(form: str, v: str, values: dict[str, str]) -> str:
    return form.format(v=v, **values)


def _frame_pairs(kind: str, frame: Frame, rng: random.Random) -> list[NearMissPair]:
    """Every candidate pair of one frame, in a seeded order."""
    slots = sorted(frame.fillers)
    combos = [dict(zip(slots, chosen, strict=True)) for chosen in itertools.product(*(frame.fillers[s] for s in slots))]
    if frame.swap is not None:
        # "Lyon to Milan" and "Milan to Lyon" are one question pair: keep one of the two orders.
        first, second = frame.swap
        unique: dict[frozenset[str], dict[str, str]] = {}
        for c in (c for c in combos if c[first] != c[second]):
            unique.setdefault(frozenset((c[first], c[second])), c)
        combos = list(unique.values())
    rng.shuffle(combos)
    # One pair per filler combination: two pairs on the same fillers could hold texts that are
    # paraphrases of each other ("under 90" in one, "below 90" in the other), which a lookup may
    # rightly be served but the file would count as a false hit.
    out: list[NearMissPair] = []
    for number, values in enumerate(combos):
        forms = list(frame.forms)
        rng.shuffle(forms)
        near = number % 3 != 2  # two near-misses for each paraphrase
        k = rng.randrange(max(len(frame.contrasts), 1))
        if frame.swap is not None:
            first, second = frame.swap
            if near:
                swapped = {**values, first: values[second], second: values[first]}
                form_b = forms[1] if rng.random() < 0.5 else forms[0]
                a, b = _fill(forms[0], "", values), _fill(form_b, "", swapped)
            else:
                a, b = _fill(forms[0], "", values), _fill(forms[1], "", values)
        elif near:
            one, other = frame.contrasts[k]
            form_b = forms[1] if rng.random() < 0.5 else forms[0]
            a, b = _fill(forms[0], one, values), _fill(form_b, other, values)
        elif frame.same and rng.random() < 0.5:
            v, v_b = frame.same[k % len(frame.same)]
            a, b = _fill(forms[0], v, values), _fill(forms[rng.randrange(len(forms))], v_b, values)
        else:
            v = frame.contrasts[k][rng.randrange(2)]
            a, b = _fill(forms[0], v, values), _fill(forms[1], v, values)
        if a == b:
            continue
        if rng.random() < 0.5:  # ask both ways across the set
            a, b = b, a
        out.append(NearMissPair(a, b, 0 if near else 1, kind if near else f"{kind}.paraphrase"))
    return out


def generate_pairs(seed: int = 0, *, per_kind: int = 60, kinds: Sequence[str] | None = None) -> list[NearMissPair]:
    """About ``per_kind`` pairs of each kind (two near-misses to one paraphrase), deterministic in ``seed``.

    No text appears in two pairs, so a lookup is never served its own text cached by another pair.
    """
    rng = random.Random(seed)
    chosen = list(KINDS) if kinds is None else list(kinds)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise ValueError(f"kinds: expected names among {sorted(KINDS)}, got {unknown}")
    seen: set[str] = set()
    pairs: list[NearMissPair] = []
    for kind in chosen:
        streams = [_frame_pairs(kind, frame, rng) for frame in KINDS[kind]]
        taken = 0
        # Round-robin over the frames, so every frame of a kind is represented.
        for candidate in itertools.chain.from_iterable(itertools.zip_longest(*streams)):
            if candidate is None:
                continue
            if taken >= per_kind:
                break
            keys = {" ".join(candidate.text_a.lower().split()), " ".join(candidate.text_b.lower().split())}
            if keys & seen:
                continue
            seen |= keys
            pairs.append(candidate)
            taken += 1
    return pairs


def write_pairs(path: str | Path, pairs: Sequence[NearMissPair]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lean_benchmarks.cache_nearmiss", description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=60)
    parser.add_argument("--out", required=True, help="JSONL path for {text_a, text_b, label, kind} rows")
    args = parser.parse_args(argv)
    pairs = generate_pairs(args.seed, per_kind=args.per_kind)
    write_pairs(args.out, pairs)
    print(f"{len(pairs)} pairs ({sum(p.label for p in pairs)} paraphrases) written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
