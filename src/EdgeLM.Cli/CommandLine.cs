using System.Globalization;

namespace EdgeLM.Cli;

/// <summary>A usage mistake: printed with the command's usage line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

public sealed record OptionSpec(string Name, string? Alias, string? ValueName, string Help, string? Default = null)
{
    public bool TakesValue => ValueName != null;
}

/// <summary>
/// One subcommand: its options and what it runs. Parsing is strict: unknown options, missing values and
/// malformed numbers are usage errors, so a typo never silently falls back to a default.
/// </summary>
public abstract class Command
{
    public abstract string Name { get; }
    public abstract string Summary { get; }
    public virtual string Usage => $"edgelm {Name} [options]";
    public abstract IReadOnlyList<OptionSpec> Options { get; }
    public abstract int Run(ParsedArgs args, CancellationToken cancel);

    public ParsedArgs Parse(string[] argv)
    {
        var values = new Dictionary<string, List<string>>();
        var positional = new List<string>();
        for (int i = 0; i < argv.Length; i++)
        {
            string a = argv[i];
            if (a == "--") { positional.AddRange(argv[(i + 1)..]); break; }
            if (a.Length > 1 && a[0] == '-' && !IsNumber(a))
            {
                string key = a, inline = "";
                bool hasInline = false;
                int eq = a.IndexOf('=');
                if (a.StartsWith("--") && eq > 0) { key = a[..eq]; inline = a[(eq + 1)..]; hasInline = true; }
                var spec = Options.FirstOrDefault(o => o.Name == key || o.Alias == key)
                    ?? throw new UsageException($"unknown option '{key}' for 'edgelm {Name}'");
                string value;
                if (spec.TakesValue)
                {
                    if (hasInline) value = inline;
                    else if (i + 1 < argv.Length) value = argv[++i];
                    else throw new UsageException($"option {spec.Name} needs a value ({spec.ValueName})");
                }
                else
                {
                    if (hasInline) throw new UsageException($"option {spec.Name} takes no value");
                    value = "true";
                }
                if (!values.TryGetValue(spec.Name, out var list)) values[spec.Name] = list = [];
                list.Add(value);
            }
            else positional.Add(a);
        }
        return new ParsedArgs(this, values, positional);
    }

    private static bool IsNumber(string s) => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    public string Help()
    {
        var lines = new List<string> { Summary, "", "usage: " + Usage, "", "options:" };
        foreach (var o in Options)
        {
            string left = (o.Alias != null ? o.Alias + ", " : "    ") + o.Name + (o.ValueName != null ? " " + o.ValueName : "");
            lines.Add($"  {left,-34} {o.Help}{(o.Default != null ? $" (default: {o.Default})" : "")}");
        }
        lines.Add($"  {"    --help",-34} show this help");
        return string.Join(Environment.NewLine, lines);
    }
}

public sealed class ParsedArgs(Command command, Dictionary<string, List<string>> values, List<string> positional)
{
    public IReadOnlyList<string> Positional => positional;

    public bool Has(string name) => values.ContainsKey(name);

    public bool Flag(string name) => values.ContainsKey(name);

    public string? Get(string name) => values.TryGetValue(name, out var v) ? v[^1] : null;

    public IReadOnlyList<string> GetAll(string name) => values.TryGetValue(name, out var v) ? v : [];

    public string Require(string name) => Get(name) ?? throw new UsageException($"'edgelm {command.Name}' needs {name}");

    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        string? s = Get(name);
        if (s == null) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            throw new UsageException($"{name} expects a whole number, got '{s}'");
        if (v < min || v > max) throw new UsageException($"{name} must be between {min} and {max}, got {v}");
        return v;
    }

    public ulong? ULong(string name)
    {
        string? s = Get(name);
        if (s == null) return null;
        if (ulong.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong v)) return v;
        if (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long sv)) return unchecked((ulong)sv);
        throw new UsageException($"{name} expects a whole number, got '{s}'");
    }

    public float Float(string name, float fallback)
    {
        string? s = Get(name);
        if (s == null) return fallback;
        if (!float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) || !float.IsFinite(v))
            throw new UsageException($"{name} expects a number, got '{s}'");
        return v;
    }
}
