"""Write an English→Korean phrase corpus in NSML's dataset layout. Nothing is downloaded: the
sentences are generated from templates that follow Korean grammar.

    python make_dataset.py /tmp/nmt_data
    nsml dataset push NMT_EN_KR /tmp/nmt_data

train/train_data, train/train_label: English and Korean sentences, one pair per line.
test/test_data, test/test_label: held-out sentences (combinations never seen in training) for the
leaderboard; training sessions never see test/.

The Korean side is word order subject-object-verb, polite 해요 endings, and particles chosen by
whether the noun ends in a final consonant (batchim): 책을 / 사과를, 책이 / 사과가, 책은 / 사과는,
책이에요 / 사과예요. The same seed always writes the same files.
"""

import random
import sys
from pathlib import Path

# Fixed phrases: these are always in train/ (and repeated there, as a corpus would have them often).
GREETINGS = [
    ("Hello", "안녕하세요"),
    ("Hi", "안녕하세요"),
    ("Good morning", "좋은 아침입니다"),
    ("Good evening", "좋은 저녁입니다"),
    ("Good night", "안녕히 주무세요"),
    ("Goodbye", "안녕히 가세요"),
    ("Thank you", "감사합니다"),
    ("Thank you very much", "정말 감사합니다"),
    ("Thanks", "고마워요"),
    ("Nice to meet you", "만나서 반갑습니다"),
    ("I am sorry", "죄송합니다"),
    ("Excuse me", "실례합니다"),
    ("Welcome", "어서 오세요"),
    ("Congratulations", "축하합니다"),
    ("Happy birthday", "생일 축하합니다"),
    ("Happy new year", "새해 복 많이 받으세요"),
    ("See you tomorrow", "내일 봐요"),
    ("How are you?", "잘 지내세요?"),
    ("I am fine", "저는 잘 지내요"),
    ("What is your name?", "이름이 뭐예요?"),
    ("Yes", "네"),
    ("No", "아니요"),
]

# English (singular, form after "I like"), Korean.
FOODS = [("apple", "apples", "사과"), ("bread", "bread", "빵"), ("rice", "rice", "밥"),
         ("kimchi", "kimchi", "김치"), ("pizza", "pizza", "피자"), ("chicken", "chicken", "치킨"),
         ("noodles", "noodles", "국수"), ("cake", "cake", "케이크"), ("fish", "fish", "생선"),
         ("meat", "meat", "고기"), ("egg", "eggs", "달걀"), ("banana", "bananas", "바나나"),
         ("strawberry", "strawberries", "딸기"), ("soup", "soup", "국")]
DRINKS = [("water", "water", "물"), ("coffee", "coffee", "커피"), ("tea", "tea", "차"),
          ("milk", "milk", "우유"), ("juice", "juice", "주스"), ("beer", "beer", "맥주"),
          ("wine", "wine", "와인")]
ANIMALS = [("dog", "dogs", "개"), ("cat", "cats", "고양이"), ("bird", "birds", "새"),
           ("horse", "horses", "말"), ("rabbit", "rabbits", "토끼")]
HOBBIES = [("music", "music", "음악"), ("movie", "movies", "영화"), ("soccer", "soccer", "축구"),
           ("baseball", "baseball", "야구"), ("game", "games", "게임")]
PLACES = [("school", "학교"), ("hospital", "병원"), ("station", "역"), ("bank", "은행"),
          ("library", "도서관"), ("park", "공원"), ("market", "시장"), ("restaurant", "식당"),
          ("airport", "공항"), ("hotel", "호텔"), ("office", "사무실"), ("bathroom", "화장실"),
          ("church", "교회"), ("beach", "해변"), ("store", "가게"), ("cafe", "카페"),
          ("museum", "박물관")]
THINGS = [("book", "책"), ("phone", "휴대폰"), ("bag", "가방"), ("key", "열쇠"),
          ("umbrella", "우산"), ("car", "자동차"), ("computer", "컴퓨터"), ("pen", "펜"),
          ("watch", "시계"), ("camera", "카메라"), ("ticket", "표"), ("map", "지도")]
# English base, 3rd person; Korean stem + 고 (want to / -ing), (으)ㄹ 수 (can), 아/어요 (present).
VERBS = [("sleep", "sleeps", "자고", "잘", "자요"), ("eat", "eats", "먹고", "먹을", "먹어요"),
         ("read", "reads", "읽고", "읽을", "읽어요"), ("swim", "swims", "수영하고", "수영할", "수영해요"),
         ("study", "studies", "공부하고", "공부할", "공부해요"), ("dance", "dances", "춤추고", "춤출", "춤춰요"),
         ("sing", "sings", "노래하고", "노래할", "노래해요"), ("run", "runs", "달리고", "달릴", "달려요"),
         ("cook", "cooks", "요리하고", "요리할", "요리해요"), ("rest", "rests", "쉬고", "쉴", "쉬어요"),
         ("work", "works", "일하고", "일할", "일해요"), ("travel", "travels", "여행하고", "여행할", "여행해요"),
         ("drive", "drives", "운전하고", "운전할", "운전해요"), ("play", "plays", "놀고", "놀", "놀아요"),
         ("walk", "walks", "걷고", "걸을", "걸어요"), ("write", "writes", "쓰고", "쓸", "써요")]
DELICIOUS = [("delicious", "맛있어요"), ("expensive", "비싸요"), ("cheap", "싸요")]
SIZES = [("big", "커요"), ("small", "작아요")]
PRICES = [("expensive", "비싸요"), ("cheap", "싸요")]
DISTANCES = [("far", "멀어요"), ("near", "가까워요")]
NAMES = [("Minsu", "민수"), ("Jisoo", "지수"), ("Younghee", "영희"), ("Jimin", "지민"),
         ("Junho", "준호"), ("Seojun", "서준"), ("Hana", "하나"), ("Sumin", "수민")]
# Subject: English, Korean, third person?, English "be".
SUBJECTS = [("I", "저", False, "am"), ("We", "우리", False, "are"), ("My friend", "제 친구", True, "is")] + \
           [(en, ko, True, "is") for en, ko in NAMES]


def batchim(word: str) -> bool:
    """Does the last syllable end in a consonant? (Hangul syllables: 0xAC00 + 28*n + final)."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def obj(w):  # object particle
    return w + ("을" if batchim(w) else "를")


def subj(w):  # subject particle
    return w + ("이" if batchim(w) else "가")


def topic(w):  # topic particle
    return w + ("은" if batchim(w) else "는")


def copula(w):  # "is X", polite
    return w + ("이에요" if batchim(w) else "예요")


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def pairs() -> list[tuple[str, str]]:
    """Every sentence pair the templates make (each English sentence once)."""
    out = []
    likeable = FOODS + DRINKS + ANIMALS + HOBBIES
    for s_en, s_ko, third, be in SUBJECTS:
        s = topic(s_ko)

        def verb(base, third_form, third=third):
            return third_form if third else base

        do_not = "doesn't" if third else "don't"
        for _, like_en, ko in likeable:
            out.append((f"{s_en} {verb('like', 'likes')} {like_en}.", f"{s} {obj(ko)} 좋아해요"))
            out.append((f"{s_en} {do_not} like {like_en}.", f"{s} {obj(ko)} 좋아하지 않아요"))
        for _, like_en, ko in FOODS:
            out.append((f"{s_en} {verb('want', 'wants')} to eat {like_en}.", f"{s} {obj(ko)} 먹고 싶어요"))
        for _, like_en, ko in DRINKS:
            out.append((f"{s_en} {verb('want', 'wants')} to drink {like_en}.", f"{s} {obj(ko)} 마시고 싶어요"))
        for en, ko in PLACES:
            out.append((f"{s_en} {be} going to the {en}.", f"{s} {ko}에 가고 있어요"))
            out.append((f"{s_en} {be} at the {en}.", f"{s} {ko}에 있어요"))
            out.append((f"{s_en} will go to the {en} tomorrow.", f"{s} 내일 {ko}에 갈 거예요"))
        for en, ko in THINGS:
            out.append((f"{s_en} {verb('have', 'has')} {article(en)}.", f"{s} {subj(ko)} 있어요"))
            out.append((f"{s_en} {do_not} have {article(en)}.", f"{s} {subj(ko)} 없어요"))
        for en, ko in THINGS + PLACES:
            out.append((f"{s_en} {be} looking for the {en}.", f"{s} {obj(ko)} 찾고 있어요"))
        for base, third_form, go, can, present in VERBS:
            out.append((f"{s_en} {verb('want', 'wants')} to {base}.", f"{s} {go} 싶어요"))
            out.append((f"{s_en} can {base}.", f"{s} {can} 수 있어요"))
            out.append((f"{s_en} {verb(base, third_form)} every day.", f"{s} 매일 {present}"))
    for en, ko in PLACES + THINGS:
        out.append((f"Where is the {en}?", f"{subj(ko)} 어디에 있어요?"))
    for en, ko in PLACES:
        out.append((f"Let's go to the {en}.", f"{ko}에 갑시다"))
    for en, ko in THINGS:
        out.append((f"This is {article(en)}.", f"이것은 {copula(ko)}"))
    for en, _, ko in FOODS + DRINKS:
        out.append((f"This is {en}.", f"이것은 {copula(ko)}"))
    for en, ko in NAMES:
        out.append((f"This is {en}.", f"이 사람은 {copula(ko)}"))
    food = [(en, ko) for en, _, ko in FOODS + DRINKS]
    for nouns, adjectives in ((food, DELICIOUS), (THINGS, SIZES + PRICES), (PLACES, SIZES + DISTANCES)):
        for en, ko in nouns:
            for adjective_en, adjective_ko in adjectives:
                out.append((f"The {en} is {adjective_en}.", f"{topic(ko)} {adjective_ko}"))
    for en, ko in [(e, k) for e, _, k in FOODS + DRINKS] + THINGS:
        out.append((f"Please give me the {en}.", f"{obj(ko)} 주세요"))
    for en, ko in NAMES:
        out.append((f"My name is {en}.", f"제 이름은 {copula(ko)}"))
    return out


def write(folder: Path, test_fraction: float = 0.1, greeting_copies: int = 8, seed: int = 0) -> None:
    rng = random.Random(seed)
    sentences = pairs()
    rng.shuffle(sentences)
    n_test = int(len(sentences) * test_fraction)
    test, train = sentences[:n_test], sentences[n_test:]
    # Greetings as people type them: "Hello", "hello!", "Hello." all mean the same.
    for en, ko in GREETINGS:
        for i in range(greeting_copies):
            text = en.lower() if i % 2 else en
            if not en.endswith("?"):
                text += ["", "!", "."][i % 3]
            train.append((text, ko))
    rng.shuffle(train)
    for split, rows in (("train", train), ("test", test)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / split / f"{split}_data").write_text("".join(en + "\n" for en, _ in rows), encoding="utf-8")
        (folder / split / f"{split}_label").write_text("".join(ko + "\n" for _, ko in rows), encoding="utf-8")
    print(f"wrote {len(train)} training and {len(test)} held-out test sentence pairs to {folder}")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "data/nmt_en_kr"))
