#!/usr/bin/env perl
# utils/run.pl: run a (possibly array) job on the local machine, with the interface and log format
# of Kaldi's utils/parallel/run.pl (kaldi-asr/kaldi, egs/wsj/s5/utils/parallel/run.pl).
#
# Usage: run.pl [options] [JOB=1:N] <log-file> <command...>
#   JOB=a:b   runs the command once per index; the identifier (any name, e.g. JOB or TASK) is
#             substituted in the command and in the log name, which must then contain it.
#   Options:  --max-jobs-run N (or -tc N): at most N jobs at once (default: number of CPUs).
#             --mem X, --num-threads N, --gpu N, --time T, --config F and any other "--opt value"
#             queue options are accepted and ignored locally.
# Each command runs as `bash -c 'set -o pipefail; <command>'` (write pipes as \| or quote them);
# its log gets "# <command>", "# Started at <date>", the output, then
# "# Accounting: time=<secs> threads=1" and "# Ended (code C) at <date>, elapsed time <secs> seconds".
# Exit status 1 and "run.pl: k / N failed, log is in <log>" if any job failed.
use strict;
use warnings;
$SIG{__DIE__} = sub { print STDERR $_[0]; exit 1; };   # every error exits with status 1
use File::Path qw(make_path);
use File::Basename qw(dirname);
use POSIX qw(WNOHANG);

my $max_jobs_run = -1;
my $jobname;
my ($jobstart, $jobend) = (1, 1);
my $array_job = 0;

sub usage {
  print STDERR "Usage: run.pl [--max-jobs-run N] [--mem X] [--num-threads N] [--gpu N] [--time T] "
             . "[JOB=1:N] <log-file> <command...>\n"
             . "e.g.: run.pl JOB=1:4 exp/x/log/foo.JOB.log echo JOB\n";
  exit 1;
}

sub num_cpus {
  my $n = `nproc 2>/dev/null`;
  chomp $n if defined $n;
  return ($n && $n =~ /^\d+$/ && $n > 0) ? $n : 1;
}

while (@ARGV >= 2) {
  my $arg = $ARGV[0];
  if ($arg eq "--max-jobs-run" || $arg eq "-tc") {
    shift @ARGV; $max_jobs_run = shift @ARGV;
    $max_jobs_run =~ /^\d+$/ && $max_jobs_run > 0
      or die "run.pl: invalid value '$max_jobs_run' for $arg (expected a positive integer)\n";
  } elsif ($arg =~ /^--max-jobs-run=(.*)$/) {
    shift @ARGV; $max_jobs_run = $1;
    $max_jobs_run =~ /^\d+$/ && $max_jobs_run > 0
      or die "run.pl: invalid value '$max_jobs_run' for --max-jobs-run (expected a positive integer)\n";
  } elsif ($arg =~ /^--[\w-]+=/) {
    shift @ARGV;                       # --opt=value: a queue option, ignored locally
  } elsif ($arg =~ /^--[\w-]+$/) {
    shift @ARGV; shift @ARGV;          # --opt value: a queue option (--mem, --gpu ...), ignored
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($jobname, $jobstart, $jobend) = ($1, $2, $3);
    $array_job = 1; shift @ARGV;
    $jobstart >= 1 or die "run.pl: array jobs must start at index 1 or higher, got $arg\n";
    $jobend >= $jobstart or die "run.pl: empty job range $arg\n";
  } elsif ($arg =~ /^([A-Za-z_]\w*)=(\d+)$/) {
    ($jobname, $jobstart, $jobend) = ($1, $2, $2);
    $array_job = 1; shift @ARGV;
  } else {
    last;
  }
}
usage() if @ARGV < 2;

my $logfile = shift @ARGV;
if ($array_job && $jobend > $jobstart && index($logfile, $jobname) < 0) {
  die "run.pl: you are running an array job $jobname=$jobstart:$jobend but the log name "
    . "'$logfile' does not contain $jobname\n";
}

# Rebuild the command line; an argument with whitespace is quoted so it stays one argument, an
# argument without (such as "|" given as \|) is passed as shell syntax, as Kaldi does.
my $cmd = "";
foreach my $x (@ARGV) {
  if ($x =~ /^\S+$/) { $cmd .= $x . " "; }
  elsif ($x !~ /'/) { $cmd .= "'" . $x . "' "; }
  else { (my $y = $x) =~ s/(["\\\$`])/\\$1/g; $cmd .= "\"" . $y . "\" "; }
}
$cmd =~ s/ $//;

$max_jobs_run = num_cpus() if $max_jobs_run < 0;

sub subst {
  my ($s, $id) = @_;
  return $s unless $array_job;
  $s =~ s/\Q$jobname\E/$id/g;
  return $s;
}

sub run_one {
  my ($jobid) = @_;
  my $this_cmd = subst($cmd, $jobid);
  my $this_log = subst($logfile, $jobid);
  my $dir = dirname($this_log);
  make_path($dir) unless -d $dir;
  open(my $fh, ">", $this_log) or die "run.pl: cannot write log file $this_log: $!\n";
  my $date = localtime();
  print $fh "# $this_cmd\n# Started at $date\n";
  close($fh);
  my $start = time();
  my $pid = fork();
  die "run.pl: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(STDOUT, ">>", $this_log) or die "run.pl: cannot append to $this_log: $!\n";
    open(STDERR, ">&", \*STDOUT) or die "run.pl: cannot dup stdout: $!\n";
    open(STDIN, "<", "/dev/null");
    exec("bash", "-c", "set -o pipefail; $this_cmd") or die "run.pl: cannot exec bash: $!\n";
  }
  waitpid($pid, 0);
  my $status = $?;
  my $code = ($status & 127) ? 128 + ($status & 127) : ($status >> 8);
  my $elapsed = time() - $start;
  open($fh, ">>", $this_log) or die "run.pl: cannot append to $this_log: $!\n";
  $date = localtime();
  print $fh "# Accounting: time=$elapsed threads=1\n";
  print $fh "# Ended (code $code) at $date, elapsed time $elapsed seconds\n";
  close($fh);
  return $code;
}

my %running;          # pid -> job id
my %failed;           # job id -> code
my $num_failed = 0;
sub reap {
  my ($block) = @_;
  my $pid = waitpid(-1, $block ? 0 : WNOHANG);
  return 0 if $pid <= 0;
  return 1 unless exists $running{$pid};
  my $jobid = delete $running{$pid};
  if ($? != 0) { $failed{$jobid} = $? >> 8; $num_failed++; }
  return 1;
}

for (my $jobid = $jobstart; $jobid <= $jobend; $jobid++) {
  while (scalar(keys %running) >= $max_jobs_run) { reap(1); }
  my $pid = fork();
  die "run.pl: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    my $code = run_one($jobid);
    exit($code == 0 ? 0 : 1);
  }
  $running{$pid} = $jobid;
}
while (scalar(keys %running) > 0) { reap(1); }

if ($num_failed > 0) {
  my @ids = sort { $a <=> $b } keys %failed;
  my $numjobs = $jobend - $jobstart + 1;
  my $flog = subst($logfile, $ids[0]);
  print STDERR "run.pl: $num_failed / $numjobs failed, log is in $flog\n";
  exit 1;
}
exit 0;
