"""Table-driven tests of the first-party math rewards (format, accuracy, mcq, count).

Every reward is fetched through ``mmr1.get_reward`` after a plugin-manager reset, so the entry-point
registration is what is under test.
"""

import pytest

import mmr1
from mmr1.plugins import reset_plugin_manager


@pytest.fixture(scope="module")
def reward():
    reset_plugin_manager()
    return mmr1.get_reward


def test_registered_names_and_descriptions():
    reset_plugin_manager()
    from mmr1.plugins import get_plugin_manager

    registry = get_plugin_manager().registry("register_rewards")
    for name in ("format", "r1v_format", "accuracy", "r1v_acc", "mcq", "count"):
        entry = registry.entry(name)
        assert entry.plugin.startswith("math"), entry.plugin
        assert entry.description
    assert mmr1.get_reward("r1v_acc") is mmr1.get_reward("accuracy")
    assert mmr1.get_reward("r1v_format") is mmr1.get_reward("format")
    assert registry.entry("r1v_acc").description == "MMR1 alias of 'accuracy'."
    for name in ("accuracy", "mcq", "count", "format"):
        text = registry.entry(name).description
        assert "range" in text and ("Reads" in text), (name, text)


# -- format ----------------------------------------------------------------------------------------
FORMAT_CASES = [
    ("<think>a</think><answer>b</answer>", False, 1.0),
    ("<think>a</think> <answer>b</answer>", False, 1.0),
    ("  <think>\nstep 1\nstep 2\n</think>\n<answer>\n42\n</answer>\n", False, 1.0),  # DOTALL
    ("<think></think><answer></answer>", False, 1.0),
    ("<answer>b</answer>", False, 0.0),
    ("<think>a</think>", False, 0.0),
    ("<think>a</think><answer>b</answer> trailing", False, 0.0),
    ("prefix <think>a</think><answer>b</answer>", False, 0.0),
    ("<think>a</think><answer>b</answer><answer>c</answer>", False, 0.0),
    ("<think>a<think>b</think><answer>c</answer>", False, 0.0),
    ("<answer>b</answer><think>a</think>", False, 0.0),
    ("<think>a</think><answer>b", False, 0.0),
    ("", False, 0.0),
    ("<THINK>a</THINK><ANSWER>b</ANSWER>", False, 0.0),
    ("<think>数学</think><answer>é ✓ 🙂</answer>", False, 1.0),
    ("<answer>b</answer>", True, 1.0),
    ("  <answer>\n b \n</answer>  ", True, 1.0),
    ("<think>a</think><answer>b</answer>", True, 0.0),
    ("<answer>b</answer> and more", True, 0.0),
    ("<answer>a</answer><answer>b</answer>", True, 0.0),
    ("no tags", True, 0.0),
    ("", True, 0.0),
    ("<answer>x", True, 0.0),
    ("<answer>b</answer>", "true", 1.0),  # option given as a string in YAML overrides
]


@pytest.mark.parametrize("completion,answer_only,expected", FORMAT_CASES)
def test_format(reward, completion, answer_only, expected):
    fn = reward("format")
    assert fn([completion], answer_only=answer_only) == [expected]


def test_format_alias_and_non_string(reward):
    assert reward("r1v_format")(["<think>a</think><answer>b</answer>", None]) == [1.0, 0.0]


# -- accuracy --------------------------------------------------------------------------------------
ACCURACY_CASES = [
    # equivalent forms
    ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),
    ("<answer>0.5</answer>", "\\frac{1}{2}", 1.0),
    ("<answer>2\\sqrt{2}</answer>", "\\sqrt{8}", 1.0),
    ("<answer>x=3</answer>", "3", 1.0),
    ("<answer>50\\%</answer>", "0.5", 1.0),
    ("<answer>\\{1, 2\\}</answer>", "\\{2,1\\}", 1.0),
    ("<answer>[1, 2)</answer>", "[1,2)", 1.0),
    ("<answer>(x+1)^2</answer>", "x^2+2x+1", 1.0),
    ("<answer>5 cm</answer>", "5", 1.0),
    ("<answer>5</answer>", "5 cm", 1.0),
    ("<answer>12 apples</answer>", 12, 1.0),
    ("<answer>\\frac{1}{2} \\text{ m}^2</answer>", "0.5", 1.0),
    ("<answer>1,000</answer>", "1000", 1.0),
    ("<answer>10.</answer>", "10", 1.0),
    ("<answer>$\\dfrac{3}{4}$</answer>", "0.75", 1.0),
    ("<answer>\\boxed{7}</answer>", "7", 1.0),
    ("<answer>-\\frac{\\sqrt{3}}{2}</answer>", "-\\frac{\\sqrt3}{2}", 1.0),
    ("<answer>90^\\circ</answer>", "90", 1.0),
    ("<answer>π</answer>", "\\pi", 1.0),
    ("<answer>−1</answer>", "-1", 1.0),  # unicode minus
    # solution wrapped in tags, or an int / float
    ("<answer>3</answer>", "<answer> 3 </answer>", 1.0),
    ("<answer>3</answer>", 3, 1.0),
    ("<answer>2.5</answer>", 2.5, 1.0),
    # extraction: last answer block, else last balanced boxed, else whole completion
    ("<answer>4</answer> ... <answer>3</answer>", "3", 1.0),
    ("<answer>3</answer> ... <answer>4</answer>", "3", 0.0),
    ("so \\boxed{\\frac{3}{4}} hence", "0.75", 1.0),
    ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "0.5", 1.0),
    ("\\boxed{\\frac{1}{2}} then \\boxed{unbalanced", "0.5", 1.0),
    ("The final answer is 7.", "7", 1.0),
    ("7", "7", 1.0),
    # text answers: normalised string match
    ("<answer>Cat.</answer>", "cat", 1.0),
    ("<answer>  New   York </answer>", "new york", 1.0),
    ("<answer>\\text{Evelyn}</answer>", "Evelyn", 1.0),
    # wrong answers
    ("<answer>4</answer>", "3", 0.0),
    ("<answer>\\frac{1}{3}</answer>", "0.5", 0.0),
    ("<answer>2\\sqrt{3}</answer>", "\\sqrt{8}", 0.0),
    ("<answer>(1, 2]</answer>", "[1,2)", 0.0),
    ("<answer>cat</answer>", "act", 0.0),  # not a product of symbols
    ("<answer>5x</answer>", "5", 0.0),
    ("<answer>100000001</answer>", "100000000", 0.0),
    # malformed / empty / hostile
    ("", "3", 0.0),
    ("<answer></answer>", "3", 0.0),
    ("<answer>   </answer>", "3", 0.0),
    ("no number here", "3", 0.0),
    ("<answer>__import__('os').getcwd()</answer>", "3", 0.0),
    ("<answer>\\frac{1}{</answer>", "0.5", 0.0),
    ("<answer>😀</answer>", "3", 0.0),
]


@pytest.mark.parametrize("completion,solution,expected", ACCURACY_CASES)
def test_accuracy(reward, completion, solution, expected):
    assert reward("accuracy")([completion], solution=[solution]) == [expected]


def test_accuracy_batch_matches_single(reward):
    completions = [c for c, _, _ in ACCURACY_CASES]
    solutions = [s for _, s, _ in ACCURACY_CASES]
    expected = [e for _, _, e in ACCURACY_CASES]
    assert reward("r1v_acc")(completions, solution=solutions, prompts=[None] * len(completions)) == expected


def test_accuracy_missing_solution_is_no_opinion(reward):
    assert reward("accuracy")(["<answer>3</answer>", "<answer>3</answer>"], solution=[None, ""]) == [None, None]


def test_accuracy_bad_options(reward):
    with pytest.raises(ValueError, match="timeout"):
        reward("accuracy")(["1"], solution=["1"], timeout=0)
    with pytest.raises(ValueError, match="solutions"):
        reward("accuracy")(["1", "2"], solution=["1"])


# -- mcq -------------------------------------------------------------------------------------------
PROBLEM = "Which animal barks?\nA. cat\nB. dog\nC. fish\nD. bird"
INLINE = "Find the angle. Choices: (A) 30 (B) 45 (C) 60 (D) 90"
MCQ_CASES = [
    ("B", "B", PROBLEM, 1.0),
    ("(B)", "B", PROBLEM, 1.0),
    ("B.", "B", PROBLEM, 1.0),
    ("B)", "B", PROBLEM, 1.0),
    ("The answer is B", "B", PROBLEM, 1.0),
    ("**B**", "B", PROBLEM, 1.0),
    ("<answer>B</answer>", "B", PROBLEM, 1.0),
    ("<think>A is a cat, not it</think><answer>(B) dog</answer>", "B", PROBLEM, 1.0),
    ("<answer>b</answer>", "B", PROBLEM, 1.0),
    ("\\boxed{B}", "B", PROBLEM, 1.0),
    ("Answer: (B)", "(B)", PROBLEM, 1.0),
    ("The correct option is D.", "D", PROBLEM, 1.0),
    ("<answer>dog</answer>", "B", PROBLEM, 1.0),  # option text for a letter solution
    ("B", "dog", PROBLEM, 1.0),  # solution is the option text
    ("<answer>(B)</answer>", "<answer>dog</answer>", PROBLEM, 1.0),
    ("<answer>Dog</answer>", "dog", PROBLEM, 1.0),
    ("C", "60", INLINE, 1.0),
    ("(D)", "D", INLINE, 1.0),
    ("E", "E", "Q? A. 1\nB. 2\nC. 3\nD. 4\nE. 5", 1.0),
    ("C", "B", PROBLEM, 0.0),
    ("A", "dog", PROBLEM, 0.0),
    ("<answer>cat</answer>", "B", PROBLEM, 0.0),
    ("B", "60", INLINE, 0.0),
    ("", "B", PROBLEM, 0.0),
    ("I am not sure", "B", PROBLEM, 0.0),
    ("<answer>F</answer>", "F", PROBLEM, 1.0),  # F is not an option letter, but the solution is the same text
    ("<answer>__import__('os').system('x')</answer>", "B", PROBLEM, 0.0),
    ("<answer>Б</answer>", "B", PROBLEM, 0.0),  # Cyrillic capital be is not B
    ("<answer>B</answer>", "dog", None, 0.0),  # no options to map the text
    ("<answer>dog</answer>", "dog", None, 1.0),
]


@pytest.mark.parametrize("completion,solution,problem,expected", MCQ_CASES)
def test_mcq(reward, completion, solution, problem, expected):
    assert reward("mcq")([completion], solution=[solution], problem=[problem]) == [expected]


def test_mcq_choices_column_and_missing_solution(reward):
    fn = reward("mcq")
    assert fn(["B", "A"], solution=["dog", "dog"], choices=[["cat", "dog"], ["cat", "dog"]]) == [1.0, 0.0]
    assert fn(["B"], solution=[None], problem=[PROBLEM]) == [None]


# -- count -----------------------------------------------------------------------------------------
COUNT_CASES = [
    ("<answer>3</answer>", 3, 1.0),
    ("<answer>3</answer>", "3", 1.0),
    ("<answer>3</answer>", "<answer> 3 </answer>", 1.0),
    ("<answer>three</answer>", 3, 1.0),
    ("<answer>Three</answer>", "three", 1.0),
    ("<answer>twelve</answer>", 12, 1.0),
    ("<answer>twenty</answer>", 20, 1.0),
    ("<answer>twenty-one</answer>", 21, 1.0),
    ("<answer>zero</answer>", 0, 1.0),
    ("<answer>none</answer>", 0, 1.0),
    ("<answer>There are 7 apples.</answer>", 7, 1.0),
    ("I see 2 red and 3 blue, so 5 in total.", 5, 1.0),
    ("\\boxed{4}", 4, 1.0),
    ("<answer>1,000</answer>", 1000, 1.0),
    ("<answer>3.0</answer>", 3, 1.0),
    ("<answer>１２</answer>", 12, 1.0),  # full-width digits
    ("<answer>a dozen</answer>", 12, 1.0),
    ("<answer>one hundred and five</answer>", 105, 1.0),
    ("<answer>4</answer>", 3, 0.0),
    ("<answer>3.5</answer>", 3, 0.0),
    ("<answer>three</answer>", 4, 0.0),
    ("<answer>several</answer>", 3, 0.0),
    ("", 3, 0.0),
    ("<answer></answer>", 0, 0.0),
    ("<answer>__import__('os').system('echo 3')</answer>", 3, 1.0),  # text: just the digit 3, never run
    ("<answer>3</answer> <answer>4</answer>", 4, 1.0),
    ("<answer>3 or 4</answer>", 3, 0.0),  # the last number counts
]


@pytest.mark.parametrize("completion,solution,expected", COUNT_CASES)
def test_count(reward, completion, solution, expected):
    assert reward("count")([completion], solution=[solution]) == [expected]


def test_count_unusable_solution_is_no_opinion(reward):
    assert reward("count")(["3", "3"], solution=[None, "many"]) == [None, None]


def test_trl_conversational_completions(reward):
    convo = [{"role": "assistant", "content": "<think>1+1</think><answer>2</answer>"}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "<answer>B</answer>"}]}]
    assert reward("format")([convo]) == [1.0]
    assert reward("accuracy")([convo], solution=["2"]) == [1.0]
    assert reward("count")([convo], solution=[2]) == [1.0]
    assert reward("mcq")([parts], solution=["B"], problem=[PROBLEM]) == [1.0]


def test_accuracy_without_tags_reads_the_end_of_a_long_completion(reward):
    """With no <answer> block and no \\boxed{}, the final answer is searched in the last 2,000
    characters: a long preamble does not hide it, and a number early on does not count."""
    filler = "let me think about this step by step. " * 80     # 3,120 characters without a digit
    assert reward("accuracy")([filler + "The final answer is 7."], solution=["7"]) == [1.0]
    assert reward("accuracy")(["First guess: 7. " + filler + "So it is 8."], solution=["7"]) == [0.0]


def test_mcq_scores_the_last_answer_phrase_of_a_self_correcting_completion(reward):
    text = "The answer is A. Wait, a cat does not bark, so the answer is B."
    assert reward("mcq")([text, text], solution=["B", "A"], problem=[PROBLEM, PROBLEM]) == [1.0, 0.0]


def test_mmr1_compat_scores_as_mmr1s_r1v_acc():
    """MMR1's r1v_acc compares the first <answer> exactly (no normalisation) before math-verify on the whole
    completion; mmr1's accuracy normalises case. The switch must change the outcome where the two differ."""
    from mmr1_math.accuracy import accuracy_reward

    completions = ["<think>look</think><answer>Yes</answer>", "<answer>yes</answer>", "<answer>5</answer>"]
    solutions = ["yes", "<answer> yes </answer>", "5"]
    assert accuracy_reward(completions, solution=solutions, workers=1) == [1.0, 1.0, 1.0]
    assert accuracy_reward(completions, solution=solutions, workers=1, mmr1_compat=True) == [0.0, 1.0, 1.0]
    # no exact match: math-verify decides on the whole completion, in the workers
    assert accuracy_reward(["<answer>$\\frac{1}{2}$</answer>"], solution=["0.5"], workers=1, mmr1_compat=True) == [1.0]
    with pytest.raises(ValueError, match="mmr1_compat must be true or false"):
        accuracy_reward(completions, solution=solutions, mmr1_compat="yes")
