"""A small car voice-assistant intent data set (the seed 000 domain), generated from templates."""
from __future__ import annotations

import itertools
import random

SINGERS = ["周杰伦", "刘德华", "王菲", "林俊杰", "陈奕迅", "邓紫棋", "张学友", "Taylor Swift"]
SONGS = ["稻香", "晴天", "青花瓷", "冰雨", "红豆", "十年", "泡沫", "花心", "Love Story"]
PLACES = ["北京西站", "首都机场", "公司", "最近的加油站", "人民广场", "西湖", "中关村", "停车场"]
PEOPLE = ["妈妈", "张三", "老王", "李经理", "爸爸", "小明"]
CITIES = ["北京", "上海", "深圳", "杭州", "成都", "广州"]
DEGREES = ["18", "20", "22", "24", "26", "二十"]

TEMPLATES: dict[str, list[str]] = {
    "music.play": ["播放{singer}的{song}", "我想听{singer}的歌", "来一首{song}", "放一首{singer}的{song}",
                   "给我放{song}", "听{singer}", "play {song}"],
    "navigation.navigate": ["导航到{place}", "去{place}怎么走", "带我去{place}", "我要去{place}",
                            "帮我导航去{place}", "到{place}的路线"],
    "climate.ac_on": ["打开空调", "空调开一下", "把空调打开", "开空调", "有点热开下空调", "帮我开空调吧",
                      "好热啊", "开一下冷气", "空调打开吧", "请打开空调", "车里太热了", "启动空调"],
    "climate.set_temperature": ["温度调到{degree}度", "把空调调到{degree}度", "空调设置{degree}度",
                                "温度设成{degree}度", "调到{degree}度"],
    "phone.call": ["打电话给{person}", "给{person}打个电话", "呼叫{person}", "拨打{person}的电话",
                   "联系{person}"],
    "weather.query": ["{city}明天天气怎么样", "今天{city}会下雨吗", "查一下{city}的天气",
                      "{city}天气", "明天{city}冷不冷"],
    "window.open": ["打开车窗", "把窗户降下来", "开一下窗", "车窗打开", "打开天窗", "降下车窗",
                    "开窗透透气", "把车窗摇下来", "窗户开一点", "打开左边车窗", "天窗打开", "开个窗"],
    "volume.up": ["声音大一点", "调高音量", "音量加大", "大声点", "把声音调大", "音量调高一点",
                  "听不清楚", "再大声一点", "声音太小了", "音量大一些", "调大声音", "加大音量"],
}

_SLOTS = {"singer": SINGERS, "song": SONGS, "place": PLACES, "person": PEOPLE, "city": CITIES, "degree": DEGREES}


SLOT_TYPES = tuple(_SLOTS)
Span = tuple[str, int, int]  # slot type, start char, end char (exclusive)


def _render(template: str, values: dict[str, str]) -> tuple[str, list[Span]]:
    """Fill a template and record where each slot value lands."""
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        text += before
        spans.append((name, len(text), len(text) + len(values[name])))
        text += values[name]
    return text + rest, spans


def _fill_annotated(template: str) -> list[tuple[str, list[Span]]]:
    names = [n for n in _SLOTS if "{" + n + "}" in template]
    return [_render(template, dict(zip(names, values)))
            for values in itertools.product(*(_SLOTS[n] for n in names))]


def _fill(template: str) -> list[str]:
    return [text for text, _ in _fill_annotated(template)]


def labels() -> list[str]:
    return list(TEMPLATES)


def balanced(rows: list[tuple[str, str]], seed: int = 0) -> list[tuple[str, str]]:
    """Repeat examples of smaller classes until every class is as large as the largest."""
    rng = random.Random(seed)
    by_label: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    largest = max(len(v) for v in by_label.values())
    out = [row for group in by_label.values() for row in group + rng.choices(group, k=largest - len(group))]
    rng.shuffle(out)
    return out


def examples(seed: int = 0, per_template: int = 12) -> list[tuple[str, str]]:
    """Distinct (text, label) pairs, a sample of each template's fillings, shuffled."""
    rng = random.Random(seed)
    data = []
    for label, templates in TEMPLATES.items():
        for template in templates:
            filled = _fill(template)
            data.extend((text, label) for text in rng.sample(filled, min(per_template, len(filled))))
    rng.shuffle(data)
    return data


DEMO_TEXTS = ["打开空调", "播放周杰伦的花心", "导航到北京西站", "明天上海天气怎么样", "给妈妈打个电话",
              "把空调调到22度", "声音大一点", "play Love Story"]


def annotated_examples(seed: int = 0, per_template: int = 12) -> list[tuple[str, str, list[Span]]]:
    """Distinct (text, intent, slot spans) triples, shuffled."""
    rng = random.Random(seed)
    data = []
    for label, templates in TEMPLATES.items():
        for template in templates:
            filled = _fill_annotated(template)
            data.extend((text, label, spans) for text, spans in rng.sample(filled, min(per_template, len(filled))))
    rng.shuffle(data)
    return data


def slot_tags() -> list[str]:
    """BIO tags of the slots, PaddleNLP order: O first."""
    return ["O"] + [f"{prefix}-{slot}" for slot in SLOT_TYPES for prefix in ("B", "I")]


SLOT_QUESTIONS = {"singer": "歌手是谁", "song": "要听什么歌", "place": "目的地是哪里", "person": "给谁打电话",
                  "city": "查哪个城市的天气", "degree": "温度调到多少度"}


def qa_examples(seed: int = 0, count: int = 400, commands: int = 3) -> list[tuple[str, str, int, str]]:
    """(question, context, answer start, answer text): a few commands joined, one slot asked."""
    rng = random.Random(seed)
    pool = [(t, spans) for t, _, spans in annotated_examples(seed, per_template=30) if spans]
    plain = [t for t, _, spans in annotated_examples(seed) if not spans]
    out = []
    while len(out) < count:
        target_text, target_spans = rng.choice(pool)
        slot, start, end = rng.choice(target_spans)
        others = [rng.choice(plain) for _ in range(commands - 1)]
        position = rng.randrange(commands)
        parts = others[:position] + [target_text] + others[position:]
        prefix = "，".join(parts[:position]) + ("，" if position else "")
        out.append((SLOT_QUESTIONS[slot], "，".join(parts), len(prefix) + start, target_text[start:end]))
    return out


QA_DEMO = [("要听什么歌", "打开空调，播放周杰伦的稻香，声音大一点"),
           ("目的地是哪里", "导航到北京西站，把空调调到22度")]
