using System.Globalization;
using System.Text;

namespace EdgeLM.Tokenization;

/// <summary>
/// Hand-written equivalent of the Qwen2 pre-tokenizer split regex, as Hugging Face tokenizers runs it (Oniguruma,
/// leftmost-first alternation with backtracking):
/// <code>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</code>
/// It works on code points, not UTF-16 units: .NET's Regex sees a supplementary-plane letter as two Cs surrogates,
/// which would split e.g. CJK Extension B words differently from the reference. \s is Unicode White_Space
/// (Oniguruma's definition), \p{L} and \p{N} are the general-category groups.
/// Every position matches some alternative, so the words tile the input with no gaps.
/// </summary>
internal static class QwenPreTokenizer
{
    private enum CharClass : byte { Letter, Number, NewLine, Space, OtherWhitespace, Other }

    private static readonly CharClass[] AsciiClasses = BuildAsciiClasses();

    /// <summary>The words of <paramref name="text"/> as strings (for tests and diagnostics).</summary>
    public static List<string> SplitToStrings(string text)
    {
        var words = new List<string>();
        int pos = 0;
        while (pos < text.Length)
        {
            int end = NextWordEnd(text, pos);
            words.Add(text[pos..end]);
            pos = end;
        }
        return words;
    }

    /// <summary>End (exclusive, in chars) of the regex match that starts at <paramref name="start"/>.</summary>
    internal static int NextWordEnd(ReadOnlySpan<char> s, int start)
    {
        CharClass first = Classify(s, start, out int firstLength);
        int afterFirst = start + firstLength;

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (s[start] == '\'' && afterFirst < s.Length)
        {
            int contraction = ContractionLength(s[afterFirst..]);
            if (contraction > 0) return afterFirst + contraction;
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (first == CharClass.Letter) return SkipLetters(s, afterFirst);
        if (first != CharClass.Number && first != CharClass.NewLine && afterFirst < s.Length
            && Classify(s, afterFirst, out _) == CharClass.Letter)
            return SkipLetters(s, afterFirst);

        // \p{N}
        if (first == CharClass.Number) return afterFirst;

        // " ?[^\s\p{L}\p{N}]+[\r\n]*"
        int symbolsStart = s[start] == ' ' ? afterFirst : start;
        if (symbolsStart < s.Length && Classify(s, symbolsStart, out _) == CharClass.Other)
        {
            int p = symbolsStart;
            while (p < s.Length && Classify(s, p, out int n) == CharClass.Other) p += n;
            while (p < s.Length && (s[p] == '\r' || s[p] == '\n')) p++;
            return p;
        }

        // Only whitespace can start here. All White_Space code points are in the BMP, so one char each.
        int runEnd = start;
        int lastNewLine = -1;
        while (runEnd < s.Length)
        {
            CharClass c = Classify(s, runEnd, out _);
            if (c == CharClass.NewLine) lastNewLine = runEnd;
            else if (c != CharClass.Space && c != CharClass.OtherWhitespace) break;
            runEnd++;
        }

        // \s*[\r\n]+ : greedy \s* backtracks to the last CR/LF of the run.
        if (lastNewLine >= 0) return lastNewLine + 1;
        // \s+(?!\S) : the run, minus its last char when a non-space follows (the lookahead needs a space after the match).
        if (runEnd == s.Length) return runEnd;
        if (runEnd - start >= 2) return runEnd - 1;
        // \s+
        return runEnd;
    }

    private static int SkipLetters(ReadOnlySpan<char> s, int p)
    {
        while (p < s.Length && Classify(s, p, out int n) == CharClass.Letter) p += n;
        return p;
    }

    /// <summary>Length of the contraction suffix after an apostrophe, or 0. Case-insensitive with Unicode simple case
    /// folding as Oniguruma applies it: U+017F LATIN SMALL LETTER LONG S folds to 's'.</summary>
    private static int ContractionLength(ReadOnlySpan<char> s)
    {
        char c = s[0];
        switch (c)
        {
            case 's' or 'S' or '\u017F' or 't' or 'T' or 'm' or 'M' or 'd' or 'D':
                return 1;
            case 'r' or 'R' or 'v' or 'V':
                return s.Length > 1 && (s[1] == 'e' || s[1] == 'E') ? 2 : 0;
            case 'l' or 'L':
                return s.Length > 1 && (s[1] == 'l' || s[1] == 'L') ? 2 : 0;
            default:
                return 0;
        }
    }

    private static CharClass Classify(ReadOnlySpan<char> s, int index, out int length)
    {
        char c = s[index];
        if (c < 128)
        {
            length = 1;
            return AsciiClasses[c];
        }
        if (char.IsHighSurrogate(c) && index + 1 < s.Length && char.IsLowSurrogate(s[index + 1]))
        {
            length = 2;
            return ClassifyCategory(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(c, s[index + 1])));
        }
        length = 1;
        if (IsWhiteSpace(c)) return CharClass.OtherWhitespace;
        return ClassifyCategory(CharUnicodeInfo.GetUnicodeCategory(c));
    }

    private static CharClass ClassifyCategory(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
            or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClass.Letter,
        UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClass.Number,
        _ => CharClass.Other,
    };

    /// <summary>Unicode White_Space above ASCII (U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
    /// Not char.IsWhiteSpace-by-category: U+0085 is Cc, and U+FEFF / U+200B are not White_Space.</summary>
    private static bool IsWhiteSpace(char c) =>
        c == '\u0085' || c == '\u00A0' || c == '\u1680' || (c >= '\u2000' && c <= '\u200A')
        || c == '\u2028' || c == '\u2029' || c == '\u202F' || c == '\u205F' || c == '\u3000';

    private static CharClass[] BuildAsciiClasses()
    {
        var table = new CharClass[128];
        for (int c = 0; c < 128; c++)
        {
            table[c] = c switch
            {
                '\r' or '\n' => CharClass.NewLine,
                ' ' => CharClass.Space,
                '\t' or '\v' or '\f' => CharClass.OtherWhitespace,
                >= 'a' and <= 'z' or >= 'A' and <= 'Z' => CharClass.Letter,
                >= '0' and <= '9' => CharClass.Number,
                _ => CharClass.Other,
            };
        }
        return table;
    }

    /// <summary>Replaces each lone UTF-16 surrogate by U+FFFD; returns the input itself when it is well-formed.</summary>
    public static string ReplaceLoneSurrogates(string text)
    {
        int firstBad = FindLoneSurrogate(text, 0);
        if (firstBad < 0) return text;
        var sb = new StringBuilder(text.Length);
        int copied = 0;
        for (int bad = firstBad; bad >= 0; bad = FindLoneSurrogate(text, bad + 1))
        {
            sb.Append(text, copied, bad - copied).Append('\uFFFD');
            copied = bad + 1;
        }
        return sb.Append(text, copied, text.Length - copied).ToString();
    }

    private static int FindLoneSurrogate(string text, int from)
    {
        int found = text.AsSpan(from).IndexOfAnyInRange('\uD800', '\uDFFF');
        if (found < 0) return -1;
        for (int i = from + found; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            return i;
        }
        return -1;
    }
}
