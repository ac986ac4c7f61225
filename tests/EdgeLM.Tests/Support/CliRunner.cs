using System.Diagnostics;

namespace EdgeLM.Tests.Support;

public sealed record CliResult(int ExitCode, string StdOut, string StdErr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout: {StdOut}\nstderr: {StdErr}";
}

/// <summary>Runs the real edgelm binary in a child process, so exit codes and crash output are what users see.</summary>
public static class CliRunner
{
    private static readonly string CliDll = Path.Combine(AppContext.BaseDirectory, "edgelm.dll");

    public static CliResult Run(string[] args, string? stdin = null, int timeoutSeconds = 120)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_TieredPGO"] = "0";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin != null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"edgelm {string.Join(' ', args)} did not finish in {timeoutSeconds} s");
        }
        return new CliResult(p.ExitCode, stdout.Result, stderr.Result);
    }
}
