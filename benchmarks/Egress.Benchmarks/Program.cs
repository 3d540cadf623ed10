using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

// Micro-benchmarks of Egress.Core's per-connection and per-query paths (time and allocated bytes per operation).
// Run in-process (no generated project, so the repository's build rules never meet generated code).
//   dotnet run -c Release --project benchmarks/Egress.Benchmarks -- [--smoke] [BenchmarkDotNet arguments]
// --smoke: one short iteration each, to prove the benchmarks still run.
bool smoke = args.Contains("--smoke");
string[] rest = [.. args.Where(a => a != "--smoke")];

Job job = smoke
    ? Job.Dry.WithToolchain(InProcessEmitToolchain.Instance)
    : Job.Default.WithToolchain(InProcessEmitToolchain.Instance)
        .WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(10).WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250));

IConfig config = DefaultConfig.Instance.AddJob(job.AsDefault()).WithOptions(ConfigOptions.DisableOptimizationsValidator);
var summaries = BenchmarkSwitcher.FromAssembly(typeof(Egress.Benchmarks.PolicyBenchmarks).Assembly)
    .Run(rest.Contains("--filter") ? rest : [.. rest, "--filter", "*"], config).ToArray();
return summaries.Length == 0 || summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
