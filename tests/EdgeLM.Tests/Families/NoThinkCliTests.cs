using System.Text.RegularExpressions;
using EdgeLM.Tests.Support;

namespace EdgeLM.Tests.Families;

public sealed partial class NoThinkCliTests(SyntheticFixture fixture) : IClassFixture<SyntheticFixture>
{
    [GeneratedRegex(@"prompt: (\d+) tokens")]
    private static partial Regex PromptTokens();

    private int PromptTokenCount(params string[] extra)
    {
        var r = CliRunner.Run(["run", "-m", fixture.GgufPath, "-p", "Hi", "--chat", "-n", "1", "--temp", "0", "--stats", "-t", "1", .. extra]);
        Assert.True(r.ExitCode == 0, r.ToString());
        return int.Parse(PromptTokens().Match(r.StdErr).Groups[1].Value);
    }

    [Fact]
    public void RunChatNoThinkAppendsTheEmptyThinkBlock()
    {
        // The fixture's byte-level tokenizer makes each byte of "<think>\n\n</think>\n\n" one token.
        Assert.Equal(PromptTokenCount() + "<think>\n\n</think>\n\n".Length, PromptTokenCount("--no-think"));
        var r = CliRunner.Run(["run", "-m", fixture.GgufPath, "-p", "Hi", "--no-think"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--chat", r.StdErr);
    }
}
