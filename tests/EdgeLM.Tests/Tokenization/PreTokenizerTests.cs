using System.Text;
using System.Text.RegularExpressions;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class PreTokenizerTests
{
    [Theory]
    [InlineData("Hello world", new[] { "Hello", " world" })]
    [InlineData("a  b", new[] { "a", " ", " b" })]
    [InlineData("a   \n\n  b", new[] { "a", "   \n\n", " ", " b" })]
    [InlineData("it's IT'S 'LL", new[] { "it", "'s", " IT", "'S", " '", "LL" })]
    [InlineData("x\u017Fy'\u017F", new[] { "x\u017Fy", "'\u017F" })]
    [InlineData("12345", new[] { "1", "2", "3", "4", "5" })]
    [InlineData("...!!\r\n\r\nx", new[] { "...!!\r\n\r\n", "x" })]
    [InlineData(" ?!", new[] { " ?!" })]
    [InlineData("\ttab", new[] { "\ttab" })]
    [InlineData("end  ", new[] { "end", "  " })]
    [InlineData("\U00020000\U00020001 \U00020002", new[] { "\U00020000\U00020001", " \U00020002" })]
    [InlineData("\U0001D7D9\U0001D7DA", new[] { "\U0001D7D9", "\U0001D7DA" })]
    [InlineData("a\u0085\u0085b", new[] { "a", "\u0085", "\u0085b" })]
    [InlineData("a\uFEFFb", new[] { "a", "\uFEFFb" })]
    public void SplitsLikeTheQwenRegex(string text, string[] expected)
    {
        Assert.Equal(expected, QwenPreTokenizer.SplitToStrings(text));
    }

    /// <summary>
    /// On BMP text .NET's Regex is a faithful second implementation of the pattern: its \s is [\f\n\r\t\v\x85\p{Z}],
    /// which equals Unicode White_Space, and BMP code points are single chars. So random BMP strings must split the same.
    /// </summary>
    [Fact]
    public void AgreesWithDotNetRegexOnRandomBmpText()
    {
        var regex = new Regex(BpeTokenizer.QwenPreTokenizerRegex, RegexOptions.CultureInvariant);
        string[] pieces = [" ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\u00A0", "\u3000", "\u2028", "\u0085", "\u200B", "a", "Zq", "é",
            "e\u0301", "'", "'s", "'T", "'re", "'VE", "'m", "'Ll", "'d", "'x", "7", "½", "Ⅻ", "٣", ".", "!!", "-", "_", "(", "中文", "Ж",
            "ا", "नम", "\u0903", "$", "\uFEFF", "ﬁ"];
        var random = new Random(1234);
        for (int trial = 0; trial < 3000; trial++)
        {
            var sb = new StringBuilder();
            int n = 1 + random.Next(14);
            for (int i = 0; i < n; i++) sb.Append(pieces[random.Next(pieces.Length)]);
            string text = sb.ToString();
            if (text.Length == 0) continue;
            var expected = regex.Matches(text).Select(m => m.Value).ToList();
            Assert.Equal(text, string.Concat(expected));
            var actual = QwenPreTokenizer.SplitToStrings(text);
            Assert.True(expected.SequenceEqual(actual),
                $"{BpeTokenizerTests.Escape(text)}: regex [{string.Join("|", expected.Select(BpeTokenizerTests.Escape))}] scanner [{string.Join("|", actual.Select(BpeTokenizerTests.Escape))}]");
        }
    }
}
