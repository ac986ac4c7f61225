using System.Text.RegularExpressions;
using EdgeLM.Tensors;

namespace EdgeLM.Compression;

/// <summary>
/// One --tensor-type REGEX=TYPE rule of llama-quantize: tensors whose name the regex finds a match in (a search,
/// not a whole-name match) get TYPE instead of the file type's choice. The first matching rule wins.
/// </summary>
public sealed class TensorTypeOverride
{
    // A hostile pattern must not hang the command; tensor names are short, so real patterns take microseconds.
    private static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(1);

    public string Pattern { get; }
    public GgmlType Type { get; }
    private readonly Regex _regex;

    public TensorTypeOverride(string pattern, GgmlType type)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        Pattern = pattern;
        Type = type;
        try
        {
            // llama.cpp lower-cases the pattern; ignoring case matches that without corrupting escapes such as \D.
            _regex = new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.IgnoreCase, MatchTimeout);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"--tensor-type: invalid regular expression '{pattern}': {e.Message}");
        }
    }

    /// <summary>Parses "REGEX=TYPE" (TYPE a tensor type such as q8_0 or q6_k); the last '=' separates them.</summary>
    public static TensorTypeOverride Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        int eq = spec.LastIndexOf('=');
        if (eq < 0) throw new ArgumentException($"--tensor-type '{spec}' should be REGEX=TYPE, e.g. token_embd=q8_0");
        string pattern = spec[..eq], typeName = spec[(eq + 1)..];
        if (pattern.Length == 0) throw new ArgumentException($"--tensor-type '{spec}' has no tensor name pattern before '='");
        if (typeName.Length == 0) throw new ArgumentException($"--tensor-type '{spec}' has no type after '='");
        GgmlType type;
        try { type = LlamaFileTypes.ParseTensorType(typeName); }
        catch (ArgumentException e) { throw new ArgumentException($"--tensor-type '{spec}': {e.Message}"); }
        return new TensorTypeOverride(pattern, type);
    }

    public bool Matches(string tensorName)
    {
        try { return _regex.IsMatch(tensorName); }
        catch (RegexMatchTimeoutException)
        {
            throw new ArgumentException($"--tensor-type: pattern '{Pattern}' takes too long to match '{tensorName}'");
        }
    }

    public override string ToString() => $"{Pattern}={GgmlTypeInfo.Name(Type).ToLowerInvariant()}";
}
