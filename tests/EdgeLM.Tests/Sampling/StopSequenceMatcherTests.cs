using System.Text;
using EdgeLM.Inference;

namespace EdgeLM.Tests.Sampling;

public class StopSequenceMatcherTests
{
    /// <summary>Feeds the pieces and returns everything shown (including the final flush) and whether it stopped.</summary>
    private static (string shown, bool stopped) Run(StopSequenceMatcher matcher, IEnumerable<string> pieces)
    {
        var shown = new StringBuilder();
        foreach (string piece in pieces)
        {
            var (emit, stopped) = matcher.Push(piece);
            shown.Append(emit);
            if (stopped) return (shown.ToString(), true);
        }
        shown.Append(matcher.Flush());
        return (shown.ToString(), false);
    }

    private static IEnumerable<string> Chars(string text) => text.Select(c => c.ToString());

    [Fact]
    public void NoStopStringsPassesEverythingThroughImmediately()
    {
        var matcher = new StopSequenceMatcher([]);
        Assert.Equal(("hello", false), matcher.Push("hello"));
        Assert.Equal((" world", false), matcher.Push(" world"));
        Assert.Equal("", matcher.Flush());
    }

    [Fact]
    public void HoldsBackPossibleStartAndReleasesItWhenItTurnsOutNotToBeAStop()
    {
        var matcher = new StopSequenceMatcher(["</end>"]);
        Assert.Equal(("text ", false), matcher.Push("text </"));
        Assert.Equal(("", false), matcher.Push("en"));
        Assert.Equal(("</enx more", false), matcher.Push("x more"));
        Assert.Equal("", matcher.Flush());
    }

    [Fact]
    public void StopSplitAcrossPieces()
    {
        var matcher = new StopSequenceMatcher(["abc"]);
        Assert.Equal(("x", false), matcher.Push("xa"));
        Assert.Equal(("", false), matcher.Push("b"));
        Assert.Equal(("", true), matcher.Push("cz"));
        Assert.True(matcher.Stopped);
        Assert.Equal("abc", matcher.MatchedStopSequence);
        Assert.Equal(("", true), matcher.Push("more"));
        Assert.Equal("", matcher.Flush());
    }

    [Fact]
    public void OverlappingPrefixes()
    {
        Assert.Equal(("aab", true), Run(new StopSequenceMatcher(["abc"]), Chars("aababcdef")));
        Assert.Equal(("aab", true), Run(new StopSequenceMatcher(["abc"]), ["aa", "ba", "bc", "def"]));
        Assert.Equal(("aab", true), Run(new StopSequenceMatcher(["abc"]), ["aababc"]));
    }

    [Fact]
    public void RepeatedPrefixCharactersFindTheStop()
    {
        // "aaab" inside "aaaab": the held tail must restart at the right 'a'.
        Assert.Equal(("a", true), Run(new StopSequenceMatcher(["aaab"]), Chars("aaaab!")));
        Assert.Equal(("a", true), Run(new StopSequenceMatcher(["aaab"]), ["aa", "aa", "b!"]));
    }

    [Fact]
    public void TextEndingInAPartialStopIsReturnedByFlush()
    {
        var matcher = new StopSequenceMatcher(["<|im_end|>"]);
        Assert.Equal(("Hi", false), matcher.Push("Hi<|im"));
        Assert.Equal("<|im", matcher.Flush());
        Assert.False(matcher.Stopped);
    }

    [Fact]
    public void MultipleStopStringsTheOneCompletingFirstWins()
    {
        var matcher = new StopSequenceMatcher(["<|im_end|>", "\n\nUser:"]);
        Assert.Equal(("hello", true), Run(matcher, ["hel", "lo\n", "\nUs", "er: x <|im_end|>"]));
        Assert.Equal("\n\nUser:", matcher.MatchedStopSequence);

        // "bc" completes before "abcd" does; a longer stop wins only when both end at the same place.
        Assert.Equal(("a", true), Run(new StopSequenceMatcher(["abcd", "bc"]), ["abcd"]));
        Assert.Equal(("", true), Run(new StopSequenceMatcher(["c", "abc"]), ["abc"]));
    }

    [Fact]
    public void ResultDoesNotDependOnHowTheTextIsSplit()
    {
        string[] stops = ["abcd", "bc", "xyx", "yxyz", "zz"];
        var random = new Random(1234);
        const string alphabet = "abcdxyz";
        for (int trial = 0; trial < 300; trial++)
        {
            string text = new(Enumerable.Range(0, random.Next(1, 30)).Select(_ => alphabet[random.Next(alphabet.Length)]).ToArray());
            var whole = Run(new StopSequenceMatcher(stops), [text]);

            var pieces = new List<string>();
            for (int at = 0; at < text.Length;)
            {
                int length = Math.Min(text.Length - at, random.Next(1, 5));
                pieces.Add(text.Substring(at, length));
                at += length;
            }
            Assert.Equal(whole, Run(new StopSequenceMatcher(stops), pieces));
            Assert.Equal(whole, Run(new StopSequenceMatcher(stops), Chars(text)));

            // Independent reference: the earliest position where some stop ends, preferring the longest stop there.
            int bestStart = -1;
            for (int end = 1; end <= text.Length && bestStart < 0; end++)
                foreach (string stop in stops.OrderByDescending(s => s.Length))
                    if (end >= stop.Length && text.Substring(end - stop.Length, stop.Length) == stop) { bestStart = end - stop.Length; break; }
            var expected = bestStart < 0 ? (text, false) : (text[..bestStart], true);
            Assert.Equal(expected, whole);
        }
    }

    [Fact]
    public void RejectsEmptyStopString() =>
        Assert.Throws<ArgumentException>(() => new StopSequenceMatcher(["ok", ""]));

    [Fact]
    public void ResetAllowsReuse()
    {
        var matcher = new StopSequenceMatcher(["!"]);
        Assert.Equal(("a", true), matcher.Push("a!b"));
        matcher.Reset();
        Assert.False(matcher.Stopped);
        Assert.Equal(("c", false), matcher.Push("c"));
    }
}
