"""Hard text for tokenizer parity: every class of character that trips WordPiece ports."""
from __future__ import annotations

import random

HAND_WRITTEN = [
    "打开空调", "播放周杰伦的花心", "导航到北京西站，然后去首都机场！",
    "ＦＵＬＬ－ＷＩＤＴＨ　ｔｅｘｔ：１２３４５", "全角标点：“你好”（测试）《书名》【括号】",
    "emoji 😀👍🏽🎉 and 👨‍👩‍👧‍👦 family", "🚗导航🚦到🅿️停车场",
    "Café naïve résumé façade Ångström", "ÉCOLE ÉLÈVE Ñandú straße",
    "control\x00chars\x01here\x7f and\ttabs\nnewlines\r\n", "zero\u200bwidth\u200cjoiners\u200d\ufeffbom",
    "soft\u00adhyphen", "x² µm º ° ℃ ™ © ® € £ ¥ $ ± × ÷ → ⇒ ∞ ≠ ≤", "①②③ ⅠⅡⅢ ㈠㈡",
    "a" * 150, "pneumonoultramicroscopicsilicovolcanoconiosis" * 3, "playing played plays player",
    "UNBELIEVABLE unbelievable Unbelievable", "hello,world!foo.bar?baz;qux:", "...!!!???",
    "http://example.com/path?q=1&b=2#frag", "user@example.com", "C++ C# .NET node.js",
    "[MASK] 是 [UNK] 和 [CLS] [SEP] [PAD]", "[mask] lowercase specials", "〇一二三", "ŋ Ʊ Ø ø",
    "مرحبا بالعالم", "สวัสดีครับ", "नमस्ते दुनिया", "Привет, мир!", "Γειά σου Κόσμε", "こんにちは世界、カタカナ",
    "안녕하세요 세계", "繁體中文測試：臺灣、香港", "𠀀𠀁𪚥 (CJK extension B)", "\u3000\u3000ideographic spaces\u3000",
    "   leading and trailing   ", "a\u0301 e\u0308 combining marks", "ﬁ ligature ﬂ", "ＡＢＣabc１２３",
    "数字123和English混合mixed文本", "温度调到22度", "～！＠＃￥％……＆＊（）——＋", "` ~ ^ | \\ / < > { } [ ]",
    "\u2028line separator\u2029paragraph", "tab\u000bvertical\u000cformfeed", "\ufffdreplacement char",
    "¡Hola! ¿Qué tal?", "l'été d'un œil", "rock'n'roll don't won't", "100% 3.14 -42 1e-5 1,000,000",
]

_POOL = ("打开空调播放周杰伦的花心导航到北京西站天气怎么样"
         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
         " \t,.!?;:'\"()[]{}<>@#$%^&*-_=+/\\|~`，。！？；：“”（）《》【】、…—"
         "ＡＢＣ１２３　😀👍🎉🚗ÉéÑñüÜçœßøØµ²º™©®€£¥±×÷→∞≠≤①ⅠŋƱ\u200b\u00ad\u0301\x00\x07\x7f"
         "مرحباสวัสดีनमस्तेПриветこんにちは안녕")


def generated(count: int = 300, seed: int = 7) -> list[str]:
    """Random strings over a pool of hard characters, words and lengths (deterministic)."""
    rng = random.Random(seed)
    words = ["play", "playing", "unable", "hello", "world", "Taylor", "Swift", "love", "story", "the"]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.3:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(_POOL) for _ in range(rng.randint(1, 8))))
        texts.append(rng.choice(["", " ", "\t"]).join(parts))
    return texts


def all_texts() -> list[str]:
    return HAND_WRITTEN + generated()
