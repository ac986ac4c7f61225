using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace EdgeLM.Evaluation;

/// <summary>
/// The Python string operations lm-evaluation-harness applies to task text, reproduced so prompts match byte for byte.
/// Known gap: full Unicode case mappings that change length (German sharp s to "SS", Greek final sigma) follow
/// .NET's simple mappings; none occur in the English task data.
/// </summary>
public static partial class PythonText
{
    /// <summary>Python's str.isspace() for one UTF-16 unit: .NET whitespace plus the four ASCII separators 0x1C..0x1F.</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>str.rstrip() with no arguments.</summary>
    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && IsSpace(s[end - 1])) end--;
        return s[..end];
    }

    /// <summary>str.strip() with no arguments.</summary>
    public static string Strip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsSpace(s[start])) start++;
        while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>str.capitalize(): first character upper (title) case, every other character lower case.</summary>
    public static string Capitalize(string s)
    {
        if (s.Length == 0) return s;
        var first = Rune.GetRuneAt(s, 0);
        var sb = new StringBuilder(s.Length);
        sb.Append(Rune.ToUpperInvariant(first).ToString());
        sb.Append(s[first.Utf16SequenceLength..].ToLowerInvariant());
        return sb.ToString();
    }

    /// <summary>len(s) in Python: code points, so a surrogate pair counts once.</summary>
    public static int CodePointLength(string s)
    {
        int n = 0;
        for (int i = 0; i < s.Length; i++)
        {
            n++;
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
        }
        return n;
    }

    [GeneratedRegex(@"\[.*?\]", RegexOptions.CultureInvariant)]
    private static partial Regex BracketTag();

    /// <summary>lm_eval/tasks/hellaswag/utils.py preprocess(): WikiHow artifacts removed.</summary>
    public static string HellaSwagPreprocess(string text)
    {
        text = Strip(text);
        text = text.Replace(" [title]", ". ", StringComparison.Ordinal);
        text = BracketTag().Replace(text, "");
        return text.Replace("  ", " ", StringComparison.Ordinal);
    }

    /// <summary>repr(float) in Python: the shortest round-trip digits, scientific below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsPositiveInfinity(v)) return "inf";
        if (double.IsNegativeInfinity(v)) return "-inf";
        if (v == 0) return double.IsNegative(v) ? "-0.0" : "0.0";
        string shortest = Math.Abs(v).ToString("R", CultureInfo.InvariantCulture);
        string digits = DigitsOf(shortest);
        int exponent = ExponentOf(shortest);
        bool negative = v < 0;
        string body;
        if (exponent < -4 || exponent >= 16)
        {
            string mant = digits.Length == 1 ? digits : digits[0] + "." + digits[1..];
            body = mant + "e" + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (exponent < 0)
            body = "0." + new string('0', -exponent - 1) + digits;
        else if (digits.Length <= exponent + 1)
            body = digits + new string('0', exponent + 1 - digits.Length) + ".0";
        else
            body = digits[..(exponent + 1)] + "." + digits[(exponent + 1)..];
        return negative ? "-" + body : body;
    }

    private static string DigitsOf(string roundTrip)
    {
        var sb = new StringBuilder();
        foreach (char c in roundTrip)
        {
            if (c is 'E' or 'e') break;
            if (char.IsAsciiDigit(c)) sb.Append(c);
        }
        string d = sb.ToString().TrimStart('0');
        d = d.TrimEnd('0');
        return d.Length == 0 ? "0" : d;
    }

    private static int ExponentOf(string roundTrip)
    {
        string s = roundTrip.TrimStart('-');
        int ePos = s.IndexOfAny(['E', 'e']);
        int exp = 0;
        if (ePos >= 0) { exp = int.Parse(s[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture); s = s[..ePos]; }
        int dot = s.IndexOf('.');
        string intPart = dot >= 0 ? s[..dot] : s, frac = dot >= 0 ? s[(dot + 1)..] : "";
        string trimmedInt = intPart.TrimStart('0');
        if (trimmedInt.Length > 0) return exp + trimmedInt.Length - 1;
        int leadingZeros = 0;
        while (leadingZeros < frac.Length && frac[leadingZeros] == '0') leadingZeros++;
        return exp - leadingZeros - 1;
    }
}
