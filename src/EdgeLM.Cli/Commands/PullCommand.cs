using EdgeLM.Formats.HuggingFace;

namespace EdgeLM.Cli.Commands;

internal sealed class PullCommand : Command
{
    public override string Name => "pull";
    public override string Summary => "download a model repository from the Hugging Face Hub (resumable, verified)";
    public override string Usage => "edgelm pull REPO [--revision main] [--include PATTERN ...] [-o DIR]";

    public override IReadOnlyList<OptionSpec> Options { get; } =
    [
        new("--revision", null, "REV", "branch, tag or commit", "main"),
        new("--include", null, "PATTERN", "files to fetch (glob, repeatable), e.g. '*q4_k_m.gguf'", "config, tokenizer and safetensors files"),
        new("--output", "-o", "DIR", "folder to download into", "the repository's name"),
    ];

    public override int Run(ParsedArgs a, CancellationToken cancel)
    {
        if (a.Positional.Count != 1) throw new UsageException("give exactly one repository, e.g. Qwen/Qwen2.5-0.5B-Instruct");
        string repo = a.Positional[0];
        string revision = a.Get("--revision") ?? "main";
        string output = a.Get("--output") ?? repo.Split('/')[^1];
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        http.DefaultRequestHeaders.UserAgent.ParseAdd($"edgelm/{Program.Version}");
        var hub = new HubDownloader(http);
        try { return RunAsync(hub, repo, revision, a.GetAll("--include"), output, cancel).GetAwaiter().GetResult(); }
        catch (HttpRequestException e) { throw new IOException($"{hub.Endpoint}: {e.Message}", e); }
    }

    private static async Task<int> RunAsync(HubDownloader hub, string repo, string revision, IReadOnlyList<string> include, string output, CancellationToken cancel)
    {
        var all = await hub.ListFilesAsync(repo, revision, cancel);
        var files = HubDownloader.Select(all, include);
        if (files.Count == 0)
            throw new ArgumentException($"{repo}@{revision}: no file matches {(include.Count > 0 ? string.Join(", ", include) : "the default patterns (config, tokenizer, safetensors); pass --include '*.gguf' for GGUF repositories")}");
        long total = files.Sum(f => f.Size ?? 0);
        Console.Error.WriteLine($"{repo}@{revision}: {files.Count} files, {total / 1e6:F1} MB -> {Path.GetFullPath(output)}");
        foreach (var file in files)
        {
            bool fetched = await hub.DownloadAsync(repo, revision, file, output,
                (done, size) => Console.Error.Write($"\r  {file.Path}: {done / 1e6:F1}{(size is long s ? $" / {s / 1e6:F1}" : "")} MB   "), cancel);
            Console.Error.WriteLine(fetched ? $"\r  {file.Path}: done, verified{new string(' ', 20)}" : $"  {file.Path}: already there, verified");
        }
        return 0;
    }
}
