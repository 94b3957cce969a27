#!/usr/bin/env perl
# utils/spk2utt_to_utt2spk.pl: convert a spk2utt table ("<spk> <utt1> <utt2> ...") read from the
# files given or stdin into utt2spk ("<utt> <spk>") on stdout, in input order, as Kaldi's does.
use strict;
use warnings;
while (my $line = <>) {
  my @F = split(" ", $line);
  next unless @F;
  @F >= 2 or die "spk2utt_to_utt2spk.pl: $ARGV:$.: speaker '$F[0]' has no utterances\n";
  my $spk = shift @F;
  print "$_ $spk\n" foreach @F;
} continue { close ARGV if eof; }
