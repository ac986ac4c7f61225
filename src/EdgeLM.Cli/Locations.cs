namespace EdgeLM.Cli;

/// <summary>Where the CLI finds shared data (../shared beside the repository) and keeps its cache.</summary>
internal static class Locations
{
    /// <summary>
    /// $EDGELM_SHARED, else the nearest folder named "shared" holding tokenizers/ or datasets/, looked for beside
    /// the working folder and each of its parents (so ../shared from the repository root), then the same from the binary.
    /// </summary>
    public static string? SharedFolder { get; } = FindShared();

    public static string? QwenTokenizer =>
        SharedFolder is { } s && File.Exists(Path.Combine(s, "tokenizers", "qwen", "tokenizer.json"))
            ? Path.Combine(s, "tokenizers", "qwen", "tokenizer.json") : null;

    public static string? Datasets =>
        SharedFolder is { } s && Directory.Exists(Path.Combine(s, "datasets")) ? Path.Combine(s, "datasets") : null;

    /// <summary>$EDGELM_CACHE, else $XDG_CACHE_HOME/edgelm, else ~/.cache/edgelm.</summary>
    public static string CacheFolder =>
        Environment.GetEnvironmentVariable("EDGELM_CACHE") is { Length: > 0 } env ? env
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "edgelm");

    private static string? FindShared()
    {
        if (Environment.GetEnvironmentVariable("EDGELM_SHARED") is { Length: > 0 } env && Directory.Exists(env)) return Path.GetFullPath(env);
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d != null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "shared");
                if (Directory.Exists(Path.Combine(candidate, "tokenizers")) || Directory.Exists(Path.Combine(candidate, "datasets")))
                    return candidate;
            }
        return null;
    }
}
