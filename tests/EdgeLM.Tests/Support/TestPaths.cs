namespace EdgeLM.Tests.Support;

/// <summary>Locates the repository root and the ../shared data folder beside it.</summary>
public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>../shared beside the repo root, or $EDGELM_SHARED.</summary>
    public static string SharedDir { get; } =
        Environment.GetEnvironmentVariable("EDGELM_SHARED") is { Length: > 0 } env ? env : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string QwenTokenizerJson => Path.Combine(SharedDir, "tokenizers", "qwen", "tokenizer.json");

    public static string TestData(params string[] parts) => Path.Combine([RepoRoot, "tests", "data", .. parts]);

    /// <summary>A fresh empty folder under the system temp dir; deleted at process exit is not guaranteed.</summary>
    public static string NewTempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "edgelm-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "EdgeLM.slnx"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository root (EdgeLM.slnx) above " + AppContext.BaseDirectory);
    }
}
