using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Egress.IntegrationTests.Infrastructure;

/// <summary>The few libc calls the harness needs.</summary>
internal static partial class Native
{
    /// <summary>CLONE_NEWNET: the namespace type passed to setns for a network namespace.</summary>
    public const int CloneNewNet = 0x40000000;

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int SetNs(SafeFileHandle namespaceFile, int namespaceType);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUserId();
}
